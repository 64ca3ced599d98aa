package outreach

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/outbox"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/outreach/store"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
)

// The lifecycle steps for outreach_deliveries (templates are tenant
// configuration and hold nothing about a customer).
var (
	_ lifecycle.Exporter = (*Server)(nil)
	_ lifecycle.Merger   = (*Server)(nil)
	_ lifecycle.Eraser   = (*Server)(nil)
)

// Section names outreach in exports, merge previews and erasures.
func (s *Server) Section() string { return "outreach" }

// Export returns the customer's delivery log, oldest first, with the
// content each delivery sent or was to send, decrypted; content whose key
// is gone is left out. The variables were never stored.
func (s *Server) Export(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID) (proto.Message, error) {
	rows, err := s.store.AllDeliveries(ctx, tx, tenant, customer)
	if err != nil {
		return nil, err
	}
	ids := []uuid.UUID{}
	for _, d := range rows {
		ids = append(ids, d.SealedCustomerID)
	}
	keys, err := s.sealer.CustomerKeys(ctx, tx, tenant, ids)
	if err != nil {
		return nil, err
	}
	out := &customerv1.OutreachExport{}
	for _, d := range rows {
		e := &customerv1.OutreachExport_Entry{Delivery: deliveryToProto(d)}
		if key := keys[d.SealedCustomerID]; key != nil && d.Content != nil {
			c, err := openContent(key, d)
			if err != nil {
				return nil, err
			}
			e.Subject, e.TextBody, e.HtmlBody = c.Subject, c.Text, c.HTML
		}
		out.Deliveries = append(out.Deliveries, e)
	}
	return out, nil
}

func openContent(key *pii.CustomerKey, d store.Delivery) (Content, error) {
	plain, err := key.Open(ContentColumn, d.Content)
	if err != nil {
		return Content{}, fmt.Errorf("open delivery %s content: %w", d.ID, err)
	}
	var c Content
	if err := json.Unmarshal(plain, &c); err != nil {
		return Content{}, fmt.Errorf("decode delivery %s content: %w", d.ID, err)
	}
	return c, nil
}

// Merge re-points the sources' deliveries to the primary, queued ones
// included (they go to the primary's address when sent). Their content
// stays sealed under the source's key, which a merge keeps.
func (s *Server) Merge(ctx context.Context, tx pgx.Tx, tenant, primary uuid.UUID, sources []uuid.UUID) (int64, error) {
	return s.store.Repoint(ctx, tx, tenant, primary, sources)
}

// Erase forgets the customer's outreach: queued deliveries fail with
// reason "erased" (an OutreachFailed each, in tx) and every delivery's
// content is deleted (the destroyed key made it unreadable already). The
// log entries stay, without content: what was sent when, to nobody
// identifiable. Erasing twice changes nothing the second time.
func (s *Server) Erase(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID) error {
	now := s.clock()
	failed, err := s.store.FailPending(ctx, tx, tenant, customer, now)
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		events := make([]outbox.Event, len(failed))
		for i, d := range failed {
			events[i] = failedEvent(d, now)
		}
		if err := outbox.Write(ctx, tx, events...); err != nil {
			return fmt.Errorf("write outreach events: %w", err)
		}
	}
	return s.store.ForgetContent(ctx, tx, tenant, customer)
}
