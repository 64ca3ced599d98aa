package grpcx

import (
	"errors"

	"buf.build/go/protovalidate"
)

// ValidationError turns a protovalidate error into INVALID_ARGUMENT with one
// field violation per broken rule. The description is the rule's message,
// which never contains the offending value. Other errors pass through.
func ValidationError(err error) error {
	if err == nil {
		return nil
	}
	var ve *protovalidate.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	vs := make([]FieldViolation, 0, len(ve.Violations))
	for _, v := range ve.Violations {
		field := protovalidate.FieldPathString(v.Proto.GetField())
		if field == "" {
			field = "request"
		}
		vs = append(vs, FieldViolation{Field: field, Description: v.Proto.GetMessage()})
	}
	return InvalidArgument(vs...)
}
