package outreach

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/google/uuid"

	"github.com/rapporthq/rapport/services/customer/internal/consent"
)

// Message is one delivery as a driver sends it.
type Message struct {
	// DeliveryID is the same on every attempt: providers deduplicate by it.
	DeliveryID uuid.UUID
	TenantID   uuid.UUID
	Channel    consent.Channel
	Purpose    consent.Purpose
	Locale     string
	// To is the recipient's address (email) or phone number (E.164).
	To      string
	Content Content
}

// Driver hands a message to a provider. It returns the provider's id of
// the message, or a *SendError saying whether trying again may help; any
// other error counts as temporary.
type Driver interface {
	Send(ctx context.Context, m Message) (providerMessageID string, err error)
}

// SendError is a failed attempt, classified. Its text never holds an
// address or content.
type SendError struct {
	// Code is what the delivery log shows: smtp_<code>, http_<status>,
	// network, timeout.
	Code string
	// Permanent: trying again will fail the same way.
	Permanent bool
	// Reason is the failure reason when permanent: bounced,
	// provider_rejected.
	Reason string
}

func (e *SendError) Error() string {
	kind := "temporary"
	if e.Permanent {
		kind = "permanent"
	}
	return fmt.Sprintf("outreach send: %s failure %s", kind, e.Code)
}

// classify turns any error from a driver into a SendError.
func classify(err error) *SendError {
	var se *SendError
	if errors.As(err, &se) {
		return se
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &SendError{Code: "timeout"}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &SendError{Code: "timeout"}
	}
	return &SendError{Code: "network"}
}
