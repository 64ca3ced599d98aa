package privacy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/store"
)

// Document is the export: every section by name, as JSON. Field names are
// the REST API's (lowerCamelCase), every field present, so an empty one
// reads as empty rather than as forgotten.
type Document struct {
	CustomerID string                     `json:"customerId"`
	ExportTime time.Time                  `json:"exportTime"`
	Sections   map[string]json.RawMessage `json:"sections"`
}

var sectionJSON = protojson.MarshalOptions{EmitUnpopulated: true}

func (s *Server) ExportCustomer(ctx context.Context, req *customerv1.ExportCustomerRequest) (*httpbody.HttpBody, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := uuid.Parse(req.GetCustomerId())
	if err != nil {
		return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "customer_id", Description: "must be a UUID"})
	}
	doc, erased, err := s.export(ctx, tenant, id)
	if err != nil {
		return nil, toStatus(err)
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode export: %w", err)
	}
	fields := []string{}
	if !erased {
		fields = append(fields, audit.ProfileFields...)
	}
	for name := range doc.Sections {
		if name != ProfileSection {
			fields = append(fields, name)
		}
	}
	slices.Sort(fields)
	// Written after the snapshot (a read-only transaction cannot), before
	// the answer: an export whose row is not written is not returned.
	if err := audit.Record(ctx, s.pool, audit.Entry{Action: audit.Export, CustomerIDs: []uuid.UUID{id},
		Fields: slices.Compact(fields)}); err != nil {
		return nil, err
	}
	return &httpbody.HttpBody{ContentType: "application/json", Data: body}, nil
}

// export reads every section in one read-only REPEATABLE READ transaction.
func (s *Server) export(ctx context.Context, tenant, id uuid.UUID) (Document, bool, error) {
	doc := Document{CustomerID: id.String(), ExportTime: s.clock(), Sections: map[string]json.RawMessage{}}
	var erased bool
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Document{}, false, fmt.Errorf("begin export: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	st, err := s.store.State(ctx, tx, tenant, id)
	if err != nil {
		return Document{}, false, err
	}
	erased = !st.EraseTime.IsZero()
	put := func(name string, m proto.Message) error {
		b, err := sectionJSON.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode export section %s: %w", name, err)
		}
		doc.Sections[name] = b
		return nil
	}
	var prof proto.Message
	if erased {
		prof = erasedProfile(id, st)
	} else if prof, err = s.profile.Export(ctx, tx, tenant, id); err != nil {
		return Document{}, false, fmt.Errorf("export %s: %w", ProfileSection, err)
	}
	if err := put(ProfileSection, prof); err != nil {
		return Document{}, false, err
	}
	for _, e := range s.exporters {
		m, err := e.Export(ctx, tx, tenant, id)
		if err != nil {
			return Document{}, false, fmt.Errorf("export %s: %w", e.Section(), err)
		}
		if err := put(e.Section(), m); err != nil {
			return Document{}, false, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return Document{}, false, fmt.Errorf("end export: %w", err)
	}
	return doc, erased, nil
}

// erasedProfile is what is left of an erased profile: its id, version and
// the time of the erasure.
func erasedProfile(id uuid.UUID, st store.EraseState) *customerv1.ProfileExport {
	return &customerv1.ProfileExport{
		Customer: &customerv1.Customer{Id: id.String(), Version: st.Version},
		Erased:   true, EraseTime: timestamppb.New(st.EraseTime),
	}
}
