package natsx

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// SubjectPrefix is the first token of every Rapport subject.
const SubjectPrefix = "rapport"

// Event attributes travel as CloudEvents NATS protocol binding headers
// (DESIGN.md §3 "Events"), so any CloudEvents tooling can read them without
// decoding the protobuf payload. NATS header names are case-sensitive and
// nats.go does not canonicalise them: always use these constants.
const (
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderType        = "ce-type"
	HeaderSource      = "ce-source"
	HeaderTime        = "ce-time"
	HeaderSubject     = "ce-subject"
	HeaderContentType = "content-type"
	// HeaderTenant carries the tenant id, so a consumer can scope its
	// transaction before decoding the payload.
	HeaderTenant = "rapport-tenant"
	// HeaderMsgID is what the stream deduplicates on inside its Duplicates
	// window. It equals ce-id, which is the outbox row id, so a relay that
	// retries a publish can never store an event twice.
	HeaderMsgID = jetstream.MsgIDHeader

	// SpecVersion is the value of HeaderSpecVersion.
	SpecVersion = "1.0"
	// ContentTypeProtobuf is the value of HeaderContentType: payloads are the
	// service's events.proto messages.
	ContentTypeProtobuf = "application/protobuf"
)

// StreamName is the one stream of a service: "RAPPORT_TICKET" for "ticket".
// It does not validate service; EnsureStream does.
func StreamName(service string) string {
	return "RAPPORT_" + strings.ToUpper(service)
}

// Subject returns "rapport.<service>.<aggregate>.<event>", e.g.
// rapport.ticket.ticket.resolved (events are named in the past tense). Each
// token must be non-empty lowercase letters, digits or underscores: anything
// else ('.', '*', '>', spaces, capitals) would change which stream and which
// consumer filters the subject falls under.
func Subject(service, aggregate, event string) (string, error) {
	for _, tok := range []struct{ kind, v string }{
		{"service", service}, {"aggregate", aggregate}, {"event", event},
	} {
		if err := checkToken(tok.kind, tok.v); err != nil {
			return "", fmt.Errorf("build subject: %w", err)
		}
	}
	return SubjectPrefix + "." + service + "." + aggregate + "." + event, nil
}

// ValidSubject reports whether s is a subject Subject could have built:
// "rapport.<service>.<aggregate>.<event>" with tokens of lowercase letters,
// digits and underscores.
func ValidSubject(s string) bool {
	toks := strings.Split(s, ".")
	if len(toks) != 4 || toks[0] != SubjectPrefix {
		return false
	}
	for _, t := range toks[1:] {
		if checkToken("", t) != nil {
			return false
		}
	}
	return true
}

// streamSubjects is the subject filter a service's stream captures.
func streamSubjects(service string) string {
	return SubjectPrefix + "." + service + ".>"
}

func checkToken(kind, v string) error {
	if v == "" {
		return fmt.Errorf("%s token is empty", kind)
	}
	for _, r := range v {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return fmt.Errorf("%s token %q: only lowercase letters, digits and '_' are allowed", kind, v)
		}
	}
	return nil
}
