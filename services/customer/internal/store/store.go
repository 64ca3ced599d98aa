// Package store keeps customer profiles in the customer schema. sqlc rows
// never leave it: every method returns domain types. Personal fields leave
// it only in clear and enter the database only sealed: the store seals on
// write and opens on read through the pii.Sealer, so no ciphertext, blind
// index or key reaches the domain, and no plaintext reaches a row.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
	"github.com/rapporthq/rapport/services/customer/internal/store/dbgen"
)

// Store implements profile.Repository.
type Store struct {
	q   *dbgen.Queries
	pii *pii.Sealer
}

// New returns a Store sealing personal fields with sealer.
func New(sealer *pii.Sealer) *Store { return &Store{q: dbgen.New(), pii: sealer} }

var _ profile.Repository = (*Store)(nil)

// Insert stores a new profile with a fresh data key of its own, in db's
// transaction: the key row and the customer row commit together or not at
// all.
func (s *Store) Insert(ctx context.Context, db profile.DB, c profile.Customer) (profile.Customer, error) {
	t, err := s.pii.Tenant(ctx, db, c.TenantID)
	if err != nil {
		return profile.Customer{}, fmt.Errorf("insert customer: %w", err)
	}
	key, err := t.NewCustomerKey(ctx, db, c.ID)
	if err != nil {
		return profile.Customer{}, fmt.Errorf("insert customer: %w", err)
	}
	f, err := seal(t, key, c)
	if err != nil {
		return profile.Customer{}, fmt.Errorf("insert customer: %w", err)
	}
	row, err := s.q.CustomerInsert(ctx, db, dbgen.CustomerInsertParams{
		TenantID: c.TenantID, ID: c.ID, DisplayNameSealed: f.displayName, EmailSealed: f.email,
		PhoneSealed: f.phone, EmailBidx: f.emailBidx, PhoneBidx: f.phoneBidx,
		Locale: c.Locale, TimeZone: c.TimeZone, Tags: c.Tags, Now: c.CreateTime,
		BirthdaySealed: f.birthday, BirthMonth: f.birthMonth, BirthDay: f.birthDay,
		AddressSealed: f.address, CountryCode: c.CountryCode(), AttributesSealed: f.attributes,
	})
	if err != nil {
		return profile.Customer{}, interpret("insert customer", err)
	}
	if err := s.putExternalRefs(ctx, db, c.TenantID, c.ID, c.ExternalRefs); err != nil {
		return profile.Customer{}, err
	}
	return withPersonal(fromRow(row), c), nil
}

// Get returns one profile, locked for update if asked.
func (s *Store) Get(ctx context.Context, db profile.DB, tenantID, id uuid.UUID, forUpdate bool) (profile.Customer, error) {
	var (
		row dbgen.Customer
		err error
	)
	if forUpdate {
		row, err = s.q.CustomerGetForUpdate(ctx, db, dbgen.CustomerGetForUpdateParams{TenantID: tenantID, ID: id})
	} else {
		row, err = s.q.CustomerGet(ctx, db, dbgen.CustomerGetParams{TenantID: tenantID, ID: id})
	}
	if err != nil {
		return profile.Customer{}, interpret("get customer", err)
	}
	out, err := s.open(ctx, db, tenantID, []dbgen.Customer{row})
	if err != nil {
		return profile.Customer{}, fmt.Errorf("get customer: %w", err)
	}
	if err := s.withExternalRefs(ctx, db, tenantID, out); err != nil {
		return profile.Customer{}, err
	}
	return out[0], nil
}

// Update writes c if c.Version is current, sealing every personal field
// afresh under the customer's key.
func (s *Store) Update(ctx context.Context, db profile.DB, c profile.Customer) (profile.Customer, error) {
	t, err := s.pii.LoadTenant(ctx, db, c.TenantID)
	if err != nil {
		return profile.Customer{}, fmt.Errorf("update customer: %w", err)
	}
	key, err := s.pii.CustomerKey(ctx, db, c.TenantID, c.ID)
	if errors.Is(err, pii.ErrKeyDestroyed) {
		return profile.Customer{}, profile.ErrNotFound
	}
	if err != nil {
		return profile.Customer{}, fmt.Errorf("update customer: %w", err)
	}
	f, err := seal(t, key, c)
	if err != nil {
		return profile.Customer{}, fmt.Errorf("update customer: %w", err)
	}
	row, err := s.q.CustomerUpdate(ctx, db, dbgen.CustomerUpdateParams{
		TenantID: c.TenantID, ID: c.ID, Version: c.Version, DisplayNameSealed: f.displayName,
		EmailSealed: f.email, PhoneSealed: f.phone, EmailBidx: f.emailBidx, PhoneBidx: f.phoneBidx,
		Locale: c.Locale, TimeZone: c.TimeZone, Tags: c.Tags, Now: c.UpdateTime,
		BirthdaySealed: f.birthday, BirthMonth: f.birthMonth, BirthDay: f.birthDay,
		AddressSealed: f.address, CountryCode: c.CountryCode(), AttributesSealed: f.attributes,
	})
	if err != nil {
		return profile.Customer{}, interpret("update customer", err)
	}
	if err := s.putExternalRefs(ctx, db, c.TenantID, c.ID, c.ExternalRefs); err != nil {
		return profile.Customer{}, err
	}
	return withPersonal(fromRow(row), c), nil
}

// List returns one page.
func (s *Store) List(ctx context.Context, db profile.DB, q profile.ListQuery) ([]profile.Customer, error) {
	p := dbgen.CustomerListParams{TenantID: q.TenantID, RowLimit: int32(q.Limit)} //nolint:gosec // bounded by the caller
	if q.BeforeID != uuid.Nil {
		p.BeforeID = uuid.NullUUID{UUID: q.BeforeID, Valid: true}
	}
	if q.Tag != "" {
		p.Tag = pgtype.Text{String: q.Tag, Valid: true}
	}
	rows, err := s.q.CustomerList(ctx, db, p)
	if err != nil {
		return nil, interpret("list customers", err)
	}
	out, err := s.open(ctx, db, q.TenantID, rows)
	if err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	if err := s.withExternalRefs(ctx, db, q.TenantID, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Lookup finds customers by exact email or phone. The blind index narrows
// the tenant's customers to candidates (about R / 2^bits besides the true
// matches, see pii.BlindIndexBits); each candidate's value is decrypted and
// compared in normalised form, so an index collision never returns the
// wrong customer. Only true matches are opened whole.
func (s *Store) Lookup(ctx context.Context, db profile.DB, q profile.LookupQuery) ([]profile.Customer, error) {
	if q.External != nil {
		return s.lookupExternal(ctx, db, q)
	}
	col, value := pii.Email, q.Email
	if q.Phone != "" {
		col, value = pii.Phone, q.Phone
	}
	t, err := s.pii.LoadTenant(ctx, db, q.TenantID)
	if errors.Is(err, pii.ErrNoTenantKeys) {
		return nil, nil // the tenant has never stored a customer
	}
	if err != nil {
		return nil, fmt.Errorf("lookup customers: %w", err)
	}
	cands, err := s.candidates(ctx, db, t, q.TenantID, col, value, "lookup customers")
	if err != nil {
		return nil, err
	}
	rows, keys, err := s.matching(ctx, db, q.TenantID, col, value, cands, q.Limit, "lookup customers")
	if err != nil {
		return nil, err
	}
	var out []profile.Customer
	for _, r := range rows {
		c, err := openRow(r, keys[r.ID])
		if err != nil {
			return nil, fmt.Errorf("lookup customers: %w", err)
		}
		out = append(out, c)
	}
	if err := s.withExternalRefs(ctx, db, q.TenantID, out); err != nil {
		return nil, err
	}
	return out, nil
}

// candidates returns the tenant's live customers whose col (email or phone)
// blind index equals value's, newest first: the true matches and about
// R / 2^bits others. doing names the caller's work in errors.
func (s *Store) candidates(ctx context.Context, db profile.DB, t *pii.TenantKeys, tenantID uuid.UUID, col pii.Column, value, doing string) ([]dbgen.Customer, error) {
	bidx, err := t.BlindIndex(col, value)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	arg := pgtype.Int4{Int32: bidx, Valid: true}
	var rows []dbgen.Customer
	if col == pii.Email {
		rows, err = s.q.CustomerCandidatesByEmail(ctx, db, dbgen.CustomerCandidatesByEmailParams{TenantID: tenantID, Bidx: arg})
	} else {
		rows, err = s.q.CustomerCandidatesByPhone(ctx, db, dbgen.CustomerCandidatesByPhoneParams{TenantID: tenantID, Bidx: arg})
	}
	if err != nil {
		return nil, interpret(doing, err)
	}
	return rows, nil
}

// matching returns the candidates whose col value, decrypted, equals value
// in normalised form (a blind-index collision is not a match), in their
// order, at most limit of them (0: all), with their keys. An erased
// candidate has no key left and never matches. Only col is opened.
func (s *Store) matching(ctx context.Context, db profile.DB, tenantID uuid.UUID, col pii.Column, value string, cands []dbgen.Customer,
	limit int, doing string,
) ([]dbgen.Customer, map[uuid.UUID]*pii.CustomerKey, error) {
	keys, err := s.pii.CustomerKeys(ctx, db, tenantID, ids(cands))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", doing, err)
	}
	want := pii.Normalise(col, value)
	var out []dbgen.Customer
	for _, r := range cands {
		key, ok := keys[r.ID]
		if !ok {
			continue // erased: nothing left to match
		}
		sealed := r.EmailSealed
		if col == pii.Phone {
			sealed = r.PhoneSealed
		}
		got, err := key.Open(col, sealed)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", doing, err)
		}
		if pii.Normalise(col, string(got)) != want {
			continue // a blind-index collision
		}
		out = append(out, r)
		if len(out) == limit {
			break
		}
	}
	return out, keys, nil
}

// sealed is a profile's personal fields as stored.
type sealed struct {
	displayName, email, phone     []byte
	emailBidx, phoneBidx          pgtype.Int4
	birthday, address, attributes []byte
	birthMonth, birthDay          pgtype.Int2
}

// seal seals c's personal fields under key and indexes email and phone. An
// empty field is stored as NULL, without an index.
func seal(t *pii.TenantKeys, key *pii.CustomerKey, c profile.Customer) (sealed, error) {
	var f sealed
	var err error
	if f.displayName, err = key.Seal(pii.DisplayName, []byte(c.DisplayName)); err != nil {
		return sealed{}, err
	}
	if f.email, f.emailBidx, err = sealIndexed(t, key, pii.Email, c.Email); err != nil {
		return sealed{}, err
	}
	if f.phone, f.phoneBidx, err = sealIndexed(t, key, pii.Phone, c.Phone); err != nil {
		return sealed{}, err
	}
	if err := sealProfileFields(key, c, &f); err != nil {
		return sealed{}, err
	}
	return f, nil
}

func sealIndexed(t *pii.TenantKeys, key *pii.CustomerKey, col pii.Column, v string) ([]byte, pgtype.Int4, error) {
	if v == "" {
		return nil, pgtype.Int4{}, nil
	}
	ct, err := key.Seal(col, []byte(v))
	if err != nil {
		return nil, pgtype.Int4{}, err
	}
	bidx, err := t.BlindIndex(col, v)
	if err != nil {
		return nil, pgtype.Int4{}, err
	}
	return ct, pgtype.Int4{Int32: bidx, Valid: true}, nil
}

// open turns rows into profiles, fetching their keys in one query. A row
// whose key is gone comes back Erased; a value that does not open under its
// key is an error (pii.ErrIntegrity), never a blank or wrong field.
func (s *Store) open(ctx context.Context, db profile.DB, tenantID uuid.UUID, rows []dbgen.Customer) ([]profile.Customer, error) {
	keys, err := s.pii.CustomerKeys(ctx, db, tenantID, ids(rows))
	if err != nil {
		return nil, err
	}
	out := make([]profile.Customer, len(rows))
	for i, r := range rows {
		key, ok := keys[r.ID]
		if !ok {
			out[i] = fromRow(r)
			out[i].Erased = true
			continue
		}
		if out[i], err = openRow(r, key); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func openRow(r dbgen.Customer, key *pii.CustomerKey) (profile.Customer, error) {
	c := fromRow(r)
	fields := []struct {
		col pii.Column
		ct  []byte
		dst *string
	}{
		{pii.DisplayName, r.DisplayNameSealed, &c.DisplayName},
		{pii.Email, r.EmailSealed, &c.Email},
		{pii.Phone, r.PhoneSealed, &c.Phone},
	}
	for _, f := range fields {
		if f.ct == nil {
			continue
		}
		pt, err := key.Open(f.col, f.ct)
		if err != nil {
			return profile.Customer{}, err
		}
		*f.dst = string(pt)
	}
	if err := openProfileFields(r, key, &c); err != nil {
		return profile.Customer{}, err
	}
	return c, nil
}

// fromRow copies a row's non-personal fields.
func fromRow(r dbgen.Customer) profile.Customer {
	tags := r.Tags
	if tags == nil {
		tags = []string{}
	}
	c := profile.Customer{
		TenantID: r.TenantID, ID: r.ID, Locale: r.Locale, TimeZone: r.TimeZone, Tags: tags,
		Version: r.Version, CreateTime: r.CreateTime.UTC(), UpdateTime: r.UpdateTime.UTC(),
	}
	if r.MergedInto.Valid {
		c.MergedInto, c.MergeTime = r.MergedInto.UUID, r.MergeTime.Time.UTC()
	}
	if r.CountryCode != "" {
		// The rest of the address is sealed; openRow adds it.
		c.Address = &profile.Address{CountryCode: r.CountryCode}
	}
	return c
}

// withPersonal is stored with the personal fields just written, which need
// no decrypting back.
func withPersonal(stored, written profile.Customer) profile.Customer {
	stored.DisplayName, stored.Email, stored.Phone = written.DisplayName, written.Email, written.Phone
	stored.Birthday, stored.Address, stored.Attributes = written.Birthday, written.Address, written.Attributes
	stored.ExternalRefs = written.ExternalRefs
	return stored
}

func ids(rows []dbgen.Customer) []uuid.UUID {
	out := make([]uuid.UUID, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out
}

// interpret classifies a database error once; a missing row is the domain's
// not-found.
func interpret(doing string, err error) error {
	err = pgdb.Classify(err)
	if errors.Is(err, pgdb.ErrNotFound) {
		return profile.ErrNotFound
	}
	return fmt.Errorf("%s: %w", doing, err)
}
