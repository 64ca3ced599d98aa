package grpcx

// Page sizes of every List method (DESIGN.md §3, AIP-158): zero asks for the
// default, anything above the maximum is coerced to it (a negative size is
// refused earlier, by the request's validation rules).
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// PageSize applies the paging rule to a requested page size.
func PageSize(requested int32) int {
	switch {
	case requested <= 0:
		return DefaultPageSize
	case requested > MaxPageSize:
		return MaxPageSize
	}
	return int(requested)
}
