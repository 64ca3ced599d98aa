package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
	"github.com/rapporthq/rapport/services/customer/internal/store/dbgen"
)

// The sealed profile columns beyond name, email and phone. Each value is
// the field's JSON, sealed whole: the AAD binds tenant, customer and column,
// so a birthday copied into the address column, or to another customer,
// does not open.
var (
	colBirthday   = pii.Column{Table: "customers", Name: "birthday"}
	colAddress    = pii.Column{Table: "customers", Name: "address"}
	colAttributes = pii.Column{Table: "customers", Name: "attributes"}
)

// sealProfileFields seals birthday, address (all but its country code,
// which the caller stores in clear) and attributes into f. The birthday's
// month and day are also kept in clear for the care calendar; its year only
// sealed.
func sealProfileFields(key *pii.CustomerKey, c profile.Customer, f *sealed) error {
	var err error
	if c.Birthday != nil {
		if f.birthday, err = sealJSON(key, colBirthday, c.Birthday); err != nil {
			return err
		}
		f.birthMonth = pgtype.Int2{Int16: int16(c.Birthday.Month), Valid: true} //nolint:gosec // 1..12, validated
		f.birthDay = pgtype.Int2{Int16: int16(c.Birthday.Day), Valid: true}     //nolint:gosec // 1..31, validated
	}
	if a := c.Address; a != nil && (len(a.Lines) > 0 || a.Locality != "" || a.Region != "" || a.PostalCode != "") {
		if f.address, err = sealJSON(key, colAddress, a); err != nil {
			return err
		}
	}
	if len(c.Attributes) > 0 {
		if f.attributes, err = sealJSON(key, colAttributes, c.Attributes); err != nil {
			return err
		}
	}
	return nil
}

func sealJSON(key *pii.CustomerKey, col pii.Column, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", col, err)
	}
	return key.Seal(col, b)
}

func openJSON(key *pii.CustomerKey, col pii.Column, ct []byte, v any) error {
	b, err := key.Open(col, ct)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", col, err)
	}
	return nil
}

// openProfileFields opens what sealProfileFields sealed into c (which
// fromRow filled with the clear columns).
func openProfileFields(r dbgen.Customer, key *pii.CustomerKey, c *profile.Customer) error {
	if r.BirthdaySealed != nil {
		b := &profile.Birthday{}
		if err := openJSON(key, colBirthday, r.BirthdaySealed, b); err != nil {
			return err
		}
		c.Birthday = b
	}
	if r.AddressSealed != nil {
		a := &profile.Address{}
		if err := openJSON(key, colAddress, r.AddressSealed, a); err != nil {
			return err
		}
		a.CountryCode = r.CountryCode
		c.Address = a
	}
	if r.AttributesSealed != nil {
		attrs := map[string]string{}
		if err := openJSON(key, colAttributes, r.AttributesSealed, &attrs); err != nil {
			return err
		}
		c.Attributes = attrs
	}
	return nil
}

// putExternalRefs makes the customer's stored refs exactly refs, in two
// statements whatever their number.
func (s *Store) putExternalRefs(ctx context.Context, db profile.DB, tenantID, customerID uuid.UUID, refs map[string]string) error {
	systems := slices.Sorted(maps.Keys(refs))
	if systems == nil {
		systems = []string{}
	}
	values := make([]string, len(systems))
	for i, sys := range systems {
		values[i] = refs[sys]
	}
	if err := s.q.ExternalRefsDeleteExcept(ctx, db, dbgen.ExternalRefsDeleteExceptParams{
		TenantID: tenantID, CustomerID: customerID, Keep: systems,
	}); err != nil {
		return interpret("store external refs", err)
	}
	if len(systems) == 0 {
		return nil
	}
	if err := s.q.ExternalRefsPut(ctx, db, dbgen.ExternalRefsPutParams{
		TenantID: tenantID, CustomerID: customerID, Systems: systems, Refs: values,
	}); err != nil {
		return interpret("store external refs", err)
	}
	return nil
}

// withExternalRefs reads the external refs of every customer in cs in one
// query.
func (s *Store) withExternalRefs(ctx context.Context, db profile.DB, tenantID uuid.UUID, cs []profile.Customer) error {
	if len(cs) == 0 {
		return nil
	}
	at := make(map[uuid.UUID]int, len(cs))
	ids := make([]uuid.UUID, len(cs))
	for i, c := range cs {
		at[c.ID], ids[i] = i, c.ID
	}
	rows, err := s.q.ExternalRefsList(ctx, db, dbgen.ExternalRefsListParams{TenantID: tenantID, CustomerIds: ids})
	if err != nil {
		return interpret("read external refs", err)
	}
	for _, r := range rows {
		c := &cs[at[r.CustomerID]]
		if c.Erased {
			continue
		}
		if c.ExternalRefs == nil {
			c.ExternalRefs = map[string]string{}
		}
		c.ExternalRefs[r.System] = r.Ref
	}
	return nil
}

// lookupExternal finds live customers by an external ref: exact, in clear.
func (s *Store) lookupExternal(ctx context.Context, db profile.DB, q profile.LookupQuery) ([]profile.Customer, error) {
	rows, err := s.q.CustomerListByExternalRef(ctx, db, dbgen.CustomerListByExternalRefParams{
		TenantID: q.TenantID, System: q.External.System, Ref: q.External.Ref,
		RowLimit: int32(q.Limit), //nolint:gosec // bounded by the caller
	})
	if err != nil {
		return nil, interpret("lookup customers", err)
	}
	return s.openLive(ctx, db, q.TenantID, rows, "lookup customers")
}

// openLive opens rows, drops the erased ones and adds external refs.
func (s *Store) openLive(ctx context.Context, db profile.DB, tenantID uuid.UUID, rows []dbgen.Customer, doing string) ([]profile.Customer, error) {
	all, err := s.open(ctx, db, tenantID, rows)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	out := slices.DeleteFunc(all, func(c profile.Customer) bool { return c.Erased })
	if err := s.withExternalRefs(ctx, db, tenantID, out); err != nil {
		return nil, err
	}
	return out, nil
}

// LockForMerge locks the customers of a merge in id order (see
// CustomerLockMany) and opens them.
func (s *Store) LockForMerge(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, ids []uuid.UUID) ([]profile.Customer, error) {
	rows, err := s.q.CustomerLockMany(ctx, tx, dbgen.CustomerLockManyParams{TenantID: tenantID, Ids: ids})
	if err != nil {
		return nil, interpret("lock customers", err)
	}
	out, err := s.open(ctx, tx, tenantID, rows)
	if err != nil {
		return nil, fmt.Errorf("lock customers: %w", err)
	}
	if err := s.withExternalRefs(ctx, tx, tenantID, out); err != nil {
		return nil, err
	}
	return out, nil
}

// MarkMerged points the sources, and the customers merged into them before,
// at the primary, and drops the sources' external refs.
func (s *Store) MarkMerged(ctx context.Context, tx pgx.Tx, tenantID, primary uuid.UUID, sources []uuid.UUID, now time.Time) error {
	if _, err := s.q.CustomerRepointMerged(ctx, tx, dbgen.CustomerRepointMergedParams{
		TenantID: tenantID, PrimaryID: primary, SourceIds: sources,
	}); err != nil {
		return interpret("re-point merged customers", err)
	}
	n, err := s.q.CustomerMarkMerged(ctx, tx, dbgen.CustomerMarkMergedParams{
		TenantID: tenantID, PrimaryID: primary, SourceIds: sources, Now: pgtype.Timestamptz{Time: now, Valid: true},
	})
	if err != nil {
		return interpret("mark customers merged", err)
	}
	if n != int64(len(sources)) {
		// The caller locked them and saw them unmerged; anything else is a bug.
		return errors.New("mark customers merged: a source changed under its lock")
	}
	if err := s.q.ExternalRefsDeleteFor(ctx, tx, dbgen.ExternalRefsDeleteForParams{TenantID: tenantID, CustomerIds: sources}); err != nil {
		return interpret("drop merged external refs", err)
	}
	return nil
}

// maxDuplicateCandidates bounds the blind-index candidates a duplicate
// search decrypts per key (about R / 2^bits besides the true matches, so a
// few hundred even at millions of customers).
const maxDuplicateCandidates = 5000

// Duplicates finds c's duplicates: the live customers whose email or phone
// blind index equals c's are candidates, and each candidate's value is
// decrypted and compared in normalised form (the index collides by design);
// external refs are compared in clear. Only true duplicates are opened.
func (s *Store) Duplicates(ctx context.Context, db profile.DB, c profile.Customer, limit int) ([]profile.Duplicate, error) {
	matches := map[uuid.UUID][]profile.Match{}
	rows := map[uuid.UUID]dbgen.Customer{}
	t, err := s.pii.LoadTenant(ctx, db, c.TenantID)
	if err != nil {
		return nil, fmt.Errorf("find duplicates: %w", err)
	}
	for _, k := range []struct {
		col   pii.Column
		value string
		key   profile.DuplicateKey
	}{{pii.Email, c.Email, profile.DuplicateEmail}, {pii.Phone, c.Phone, profile.DuplicatePhone}} {
		if k.value == "" {
			continue
		}
		cands, err := s.candidates(ctx, db, t, c.TenantID, k.col, k.value, "find duplicates")
		if err != nil {
			return nil, err
		}
		cands = slices.DeleteFunc(cands, func(r dbgen.Customer) bool { return r.ID == c.ID })
		if len(cands) > maxDuplicateCandidates {
			cands = cands[:maxDuplicateCandidates]
		}
		same, _, err := s.matching(ctx, db, c.TenantID, k.col, k.value, cands, 0, "find duplicates")
		if err != nil {
			return nil, err
		}
		for _, r := range same {
			matches[r.ID] = append(matches[r.ID], profile.Match{Key: k.key})
			rows[r.ID] = r
		}
	}
	shared, err := s.q.ExternalRefsShared(ctx, db, dbgen.ExternalRefsSharedParams{TenantID: c.TenantID, CustomerID: c.ID})
	if err != nil {
		return nil, interpret("find duplicates", err)
	}
	var missing []uuid.UUID
	for _, r := range shared {
		matches[r.CustomerID] = append(matches[r.CustomerID], profile.Match{Key: profile.DuplicateExternalRef, System: r.System})
		if _, ok := rows[r.CustomerID]; !ok && !slices.Contains(missing, r.CustomerID) {
			missing = append(missing, r.CustomerID)
		}
	}
	if len(missing) > 0 {
		more, err := s.q.CustomerGetMany(ctx, db, dbgen.CustomerGetManyParams{TenantID: c.TenantID, Ids: missing})
		if err != nil {
			return nil, interpret("find duplicates", err)
		}
		for _, r := range more {
			rows[r.ID] = r
		}
	}
	// Newest first (ids are UUIDv7), at most limit.
	found := slices.SortedFunc(maps.Keys(rows), func(a, b uuid.UUID) int { return bytes.Compare(b[:], a[:]) })
	if len(found) > limit {
		found = found[:limit]
	}
	list := make([]dbgen.Customer, len(found))
	for i, id := range found {
		list[i] = rows[id]
	}
	opened, err := s.openLive(ctx, db, c.TenantID, list, "find duplicates")
	if err != nil {
		return nil, err
	}
	out := make([]profile.Duplicate, len(opened))
	for i, d := range opened {
		out[i] = profile.Duplicate{Customer: d, Matches: matches[d.ID]}
	}
	return out, nil
}
