package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/google/go-cmp/cmp"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/pkg/service"
	"github.com/rapporthq/rapport/services/customer"
)

var spec = pgdbtest.Spec{Schema: customer.Name, Migrations: customer.Migrations()}

// testBundle is the customer service as the rapport binary builds it
// (customer.New, registered on a grpcx server with its whole interceptor
// chain) on a fresh database, called over an in-memory connection.
type testBundle struct {
	dbURL  string
	pool   *pgxpool.Pool
	master []byte
	client customerv1.CustomerServiceClient
	logs   *grpcxtest.LogBuffer
	tenant string
}

type setupOpts struct {
	// dbURL reuses another bundle's database (a second replica).
	dbURL string
	// master is the master key; nil generates one.
	master []byte
}

func setup(t *testing.T, opts *setupOpts) *testBundle {
	t.Helper()
	if opts == nil {
		opts = &setupOpts{}
	}
	ctx := context.Background()
	b := &testBundle{dbURL: opts.dbURL, master: opts.master, logs: &grpcxtest.LogBuffer{}, tenant: uuid.NewString()}
	if b.dbURL == "" {
		b.dbURL = pgdbtest.NewDatabase(t, spec)
	}
	if b.master == nil {
		var err error
		b.master, err = customer.GenerateMasterKey()
		require.NoError(t, err)
	}
	pool := pgdbtest.Pool(t, b.dbURL, spec.Schema)
	b.pool = pool

	logger := slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := customer.New(ctx, service.Deps{Pool: pool, Logger: logger}, customer.Config{MasterKey: b.master})
	require.NoError(t, err)
	srv, err := grpcx.NewServer(grpcx.ServerConfig{
		Logger: logger,
		// The tests' principal comes from metadata: authentication itself
		// is tested elsewhere.
		AuthFunc: func(ctx context.Context) (context.Context, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			if len(md.Get("x-tenant")) == 0 {
				return nil, status.Error(codes.Unauthenticated, "authentication required")
			}
			return authn.NewContext(ctx, authn.Principal{TenantID: md.Get("x-tenant")[0], Subject: md.Get("x-subject")[0],
				Roles: []string{"admin"}}), nil
		},
		Authorize: func(context.Context, string) error { return nil },
	})
	require.NoError(t, err)
	svc.Register(srv)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	b.client = customerv1.NewCustomerServiceClient(conn)
	return b
}

// as is a call context for tenant b.tenant as subject "agent".
func (b *testBundle) as() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-tenant", b.tenant, "x-subject", "agent")
}

func (b *testBundle) create(t *testing.T, c *customerv1.Customer, requestID string) *customerv1.Customer {
	t.Helper()
	got, err := b.client.CreateCustomer(b.as(), &customerv1.CreateCustomerRequest{Customer: c, RequestId: requestID})
	require.NoError(t, err)
	return got
}

func (b *testBundle) lookupEmail(t *testing.T, email string) []*customerv1.Customer {
	t.Helper()
	resp, err := b.client.LookupCustomers(b.as(), &customerv1.LookupCustomersRequest{Key: &customerv1.LookupCustomersRequest_Email{Email: email}})
	require.NoError(t, err)
	return resp.GetCustomers()
}

func (b *testBundle) lookupPhone(t *testing.T, phone string) []*customerv1.Customer {
	t.Helper()
	resp, err := b.client.LookupCustomers(b.as(), &customerv1.LookupCustomersRequest{Key: &customerv1.LookupCustomersRequest_Phone{Phone: phone}})
	require.NoError(t, err)
	return resp.GetCustomers()
}

// requireInternal checks an error is the generic INTERNAL, which names
// nothing it was about.
func requireInternal(t *testing.T, err error, markers ...string) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.Internal, st.Code(), "%v", err)
	require.Equal(t, "internal error", st.Message())
	for _, m := range markers {
		require.NotContains(t, st.String(), m)
	}
}

// requireCleanLogs: the service logged something, and none of it is
// personal data.
func (b *testBundle) requireCleanLogs(t *testing.T, markers []string) {
	t.Helper()
	logs := b.logs.String()
	require.NotEmpty(t, logs, "nothing logged: the check would be vacuous")
	for _, m := range markers {
		require.NotContains(t, logs, m)
	}
}

// marked is customer i of a SEC-07 run: every personal field carries a
// marker no random ciphertext will ever contain. The birthday is numbers
// only (no marker can tell its year from any other number); its sealing is
// checked in TestProfileFields. External refs and the country code are
// stored in clear by design and carry no marker.
func marked(i int) *customerv1.Customer {
	return &customerv1.Customer{
		DisplayName: fmt.Sprintf("Qxv Markername%03d Zyw", i),
		Email:       fmt.Sprintf("Qxv.Markermail%03d@Example.org", i),
		Phone:       fmt.Sprintf("+1987650%04d", i),
		Locale:      "en-GB", TimeZone: "Europe/London", Tags: []string{"sec07"},
		Birthday: &customerv1.Birthday{Year: 1900 + int32(i), Month: 1 + int32(i%12), Day: 1 + int32(i%28)}, //nolint:gosec // i < 100
		Address: &customerv1.PostalAddress{
			Lines:    []string{fmt.Sprintf("Qxv Markerstreet%03d 1", i), fmt.Sprintf("Qxv Markerflat%03d", i)},
			Locality: fmt.Sprintf("Qxv Markertown%03d", i), Region: fmt.Sprintf("Qxv Markerregion%03d", i),
			PostalCode: fmt.Sprintf("QXVPC%03dZZ", i), CountryCode: "GB",
		},
		ExternalRefs: map[string]string{"shop": fmt.Sprintf("S-%03d", i)},
		Attributes:   map[string]string{fmt.Sprintf("qxvmarkerkey%03d", i): fmt.Sprintf("Qxv Markerattr%03d", i)},
	}
}

// markersOf are the marker strings of marked(i)'s personal fields.
func markersOf(i int) []string {
	c := marked(i)
	a := c.GetAddress()
	out := []string{c.GetDisplayName(), c.GetEmail(), c.GetPhone(),
		fmt.Sprintf("Markername%03d", i), fmt.Sprintf("Markermail%03d", i),
		a.GetLines()[0], a.GetLines()[1], a.GetLocality(), a.GetRegion(), a.GetPostalCode(),
		fmt.Sprintf("Markerstreet%03d", i), fmt.Sprintf("Markertown%03d", i), fmt.Sprintf("Markerregion%03d", i)}
	for k, v := range c.GetAttributes() {
		out = append(out, k, v, fmt.Sprintf("Markerattr%03d", i))
	}
	return out
}

// forms are what a marker may look like when stored carelessly: as is,
// lower-cased, upper-cased, hex, and base64 at each of the three byte
// alignments (the stable middle of the encoding, whatever surrounds it).
func forms(marker string) []string {
	out := []string{marker, strings.ToLower(marker), strings.ToUpper(marker), hex.EncodeToString([]byte(marker))}
	for _, m := range []string{marker, strings.ToLower(marker)} {
		out = append(out, base64.StdEncoding.EncodeToString([]byte(m)), base64.RawURLEncoding.EncodeToString([]byte(m)))
		for k := range 3 {
			s := base64.StdEncoding.EncodeToString(append(make([]byte, k), m...))
			start := 0
			if k > 0 {
				start = 4
			}
			out = append(out, s[start:len(s)-4])
		}
	}
	return out
}

// hit is a marker found in a column.
type hit struct{ table, column, marker string }

// scanSchema reads every column of every table in the schema, bytea as raw
// bytes and everything else as its text form, and reports each marker form
// found. It also returns how many non-null values it read.
func scanSchema(t *testing.T, pool *pgxpool.Pool, schema string, markers []string) (hits []hit, values int) {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT c.table_name, c.column_name, c.data_type
		FROM information_schema.columns c JOIN information_schema.tables t USING (table_schema, table_name)
		WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE' ORDER BY 1, 2`, schema)
	require.NoError(t, err)
	type col struct{ table, name, typ string }
	var cols []col
	for rows.Next() {
		var c col
		require.NoError(t, rows.Scan(&c.table, &c.name, &c.typ))
		cols = append(cols, c)
	}
	require.NoError(t, rows.Err())
	var all []string
	for _, m := range markers {
		all = append(all, forms(m)...)
	}
	for _, c := range cols {
		expr := fmt.Sprintf("%q::text", c.name)
		if c.typ == "bytea" {
			expr = fmt.Sprintf("%q", c.name)
		}
		vals, err := pool.Query(ctx, fmt.Sprintf("SELECT %s FROM %q.%q WHERE %q IS NOT NULL", expr, schema, c.table, c.name))
		require.NoError(t, err)
		for vals.Next() {
			var v []byte
			require.NoError(t, vals.Scan(&v))
			values++
			for _, m := range all {
				if bytes.Contains(v, []byte(m)) {
					hits = append(hits, hit{c.table, c.name, m})
				}
			}
		}
		require.NoError(t, vals.Err())
	}
	return hits, values
}

// TestSEC07PersonalDataAtRest: 100 customers with markers in name, email and
// phone, created and partly updated with request ids (so idempotency records
// and outbox events exist too); then every column of every table of the
// schema is read, and no marker may appear in any form. Exact lookups by
// email and phone find the right customer and only it.
func TestSEC07PersonalDataAtRest(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()

	const n = 100
	created := make([]*customerv1.Customer, n)
	requestIDs := make([]string, n)
	var markers []string
	for i := range n {
		requestIDs[i] = uuid.NewString()
		created[i] = b.create(t, marked(i), requestIDs[i])
		markers = append(markers, markersOf(i)...)
	}
	// A tenth move to new values, again with request ids.
	for i := 0; i < n; i += 10 {
		c := &customerv1.Customer{Id: created[i].GetId(), Email: fmt.Sprintf("Qxv.Markernew%03d@Example.org", i), Phone: fmt.Sprintf("+1987651%04d", i)}
		got, err := b.client.UpdateCustomer(b.as(), &customerv1.UpdateCustomerRequest{Customer: c,
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"email", "phone"}}, RequestId: uuid.NewString()})
		require.NoError(t, err)
		created[i] = got
		markers = append(markers, c.GetEmail(), c.GetPhone(), fmt.Sprintf("Markernew%03d", i))
	}

	t.Run("NoColumnOfAnyTableHoldsAMarker", func(t *testing.T) {
		hits, values := scanSchema(t, b.pool, spec.Schema, markers)
		require.Empty(t, hits)
		require.Greater(t, values, 10*n, "the scan read the rows")
		var keys, events, customers int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM idempotency_keys), (SELECT count(*) FROM outbox),
			(SELECT count(*) FROM customers)`).Scan(&keys, &events, &customers))
		require.Equal(t, n+n/10, keys, "stored responses were scanned")
		require.Equal(t, n+n/10, events, "event payloads were scanned")
		require.Equal(t, n, customers)
	})

	t.Run("ExactLookupFindsTheCustomerAndOnlyIt", func(t *testing.T) {
		for _, i := range []int{1, 42, 99} {
			want := created[i]
			got := b.lookupEmail(t, marked(i).GetEmail())
			require.Len(t, got, 1)
			require.Empty(t, cmp.Diff(want, got[0], protocmp.Transform()))
			got = b.lookupEmail(t, strings.ToUpper(marked(i).GetEmail()))
			require.Len(t, got, 1, "emails match without regard to case")
			require.Equal(t, want.GetId(), got[0].GetId())
			got = b.lookupPhone(t, marked(i).GetPhone())
			require.Len(t, got, 1)
			require.Equal(t, want.GetId(), got[0].GetId())
		}
		require.Empty(t, b.lookupEmail(t, marked(0).GetEmail()), "customer 0 moved to a new email")
		require.Len(t, b.lookupEmail(t, created[0].GetEmail()), 1)
		require.Empty(t, b.lookupEmail(t, "nobody@example.org"))
	})

	t.Run("ARetryReplaysTheSealedFirstResponse", func(t *testing.T) {
		got := b.create(t, marked(5), requestIDs[5])
		require.Empty(t, cmp.Diff(created[5], got, protocmp.Transform()))
		// The first response, not today's profile: customer 0 has changed
		// since, and its retry still answers with the profile it made.
		first := b.create(t, marked(0), requestIDs[0])
		require.Equal(t, marked(0).GetEmail(), first.GetEmail())
	})

	t.Run("ScannerFindsPlantedMarkers", func(t *testing.T) {
		// Negative control: the same scan over a table holding a marker in
		// clear, lower-cased and base64 must report all three.
		_, err := b.pool.Exec(ctx, `CREATE TABLE leak_probe (t text, b bytea, j jsonb)`)
		require.NoError(t, err)
		t.Cleanup(func() { _, _ = b.pool.Exec(context.Background(), `DROP TABLE leak_probe`) })
		m := marked(7).GetEmail()
		_, err = b.pool.Exec(ctx, `INSERT INTO leak_probe VALUES ($1, $2, $3)`, "x"+strings.ToLower(m),
			[]byte("\x00\x01"+base64.StdEncoding.EncodeToString([]byte("ab"+m))), fmt.Sprintf(`{"e": %q}`, m))
		require.NoError(t, err)
		hits, _ := scanSchema(t, b.pool, spec.Schema, []string{m})
		found := map[string]bool{}
		for _, h := range hits {
			require.Equal(t, "leak_probe", h.table)
			found[h.column] = true
		}
		require.Equal(t, map[string]bool{"t": true, "b": true, "j": true}, found)
	})

	b.requireCleanLogs(t, markers)
}

func TestLookupCustomers(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)

	t.Run("NeedsAnEmailOrAPhone", func(t *testing.T) {
		_, err := b.client.LookupCustomers(b.as(), &customerv1.LookupCustomersRequest{})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		_, err = b.client.LookupCustomers(b.as(), &customerv1.LookupCustomersRequest{Key: &customerv1.LookupCustomersRequest_Phone{Phone: "12345"}})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
	})

	t.Run("FindsNothingInAnEmptyTenant", func(t *testing.T) {
		require.Empty(t, b.lookupEmail(t, "ada@example.com"))
	})

	t.Run("FindsOnlyTheCallersTenantsCustomers", func(t *testing.T) {
		ada := b.create(t, &customerv1.Customer{DisplayName: "Ada", Email: "ada@example.com"}, "")
		other := &testBundle{client: b.client, tenant: uuid.NewString()}
		other.create(t, &customerv1.Customer{DisplayName: "Ada elsewhere", Email: "ada@example.com"}, "")
		got := b.lookupEmail(t, "ada@example.com")
		require.Len(t, got, 1)
		require.Equal(t, ada.GetId(), got[0].GetId())
	})
}

// TestTamperedCiphertext: a sealed value moved by someone with write access
// to the database does not open; the caller gets a generic INTERNAL and the
// log says what failed without any personal data.
func TestTamperedCiphertext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("EmailCopiedToAnotherCustomer", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ada, bob := b.create(t, marked(1), ""), b.create(t, marked(2), "")
		_, err := b.pool.Exec(ctx, `UPDATE customers SET email_sealed = (SELECT email_sealed FROM customers WHERE id = $1) WHERE id = $2`,
			ada.GetId(), bob.GetId())
		require.NoError(t, err)
		_, err = b.client.GetCustomer(b.as(), &customerv1.GetCustomerRequest{Id: bob.GetId()})
		requireInternal(t, err, marked(1).GetEmail(), marked(2).GetEmail())
		_, err = b.client.ListCustomers(b.as(), &customerv1.ListCustomersRequest{})
		requireInternal(t, err)
		require.Contains(t, b.logs.String(), "does not open", "the log says why")
		b.requireCleanLogs(t, []string{marked(1).GetEmail(), marked(2).GetEmail(), marked(1).GetDisplayName()})
	})

	t.Run("EmailCopiedIntoThePhoneColumn", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ada := b.create(t, marked(1), "")
		_, err := b.pool.Exec(ctx, `UPDATE customers SET phone_sealed = email_sealed WHERE id = $1`, ada.GetId())
		require.NoError(t, err)
		_, err = b.client.GetCustomer(b.as(), &customerv1.GetCustomerRequest{Id: ada.GetId()})
		requireInternal(t, err, marked(1).GetEmail())
		_, err = b.client.LookupCustomers(b.as(), &customerv1.LookupCustomersRequest{Key: &customerv1.LookupCustomersRequest_Phone{Phone: marked(1).GetPhone()}})
		requireInternal(t, err, marked(1).GetPhone())
		b.requireCleanLogs(t, []string{marked(1).GetEmail(), marked(1).GetPhone()})
	})
}

// TestWrongMasterKey: a replica configured with another master key opens
// nothing, writes nothing, and says only INTERNAL.
func TestWrongMasterKey(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ada := b.create(t, marked(1), "")
	wrong := setup(t, &setupOpts{dbURL: b.dbURL})
	wrong.tenant = b.tenant

	_, err := wrong.client.GetCustomer(wrong.as(), &customerv1.GetCustomerRequest{Id: ada.GetId()})
	requireInternal(t, err, marked(1).GetDisplayName())
	_, err = wrong.client.ListCustomers(wrong.as(), &customerv1.ListCustomersRequest{})
	requireInternal(t, err)
	_, err = wrong.client.LookupCustomers(wrong.as(), &customerv1.LookupCustomersRequest{Key: &customerv1.LookupCustomersRequest_Email{Email: marked(1).GetEmail()}})
	requireInternal(t, err)
	_, err = wrong.client.CreateCustomer(wrong.as(), &customerv1.CreateCustomerRequest{Customer: marked(2)})
	requireInternal(t, err)
	_, err = wrong.client.CreateCustomer(wrong.as(), &customerv1.CreateCustomerRequest{Customer: marked(2), RequestId: uuid.NewString()})
	requireInternal(t, err)

	var customers, tenantKeys int
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM tenant_keys)`).Scan(&customers, &tenantKeys))
	require.Equal(t, 1, customers, "nothing was written")
	require.Equal(t, 1, tenantKeys, "no second key set was made")
	got, err := b.client.GetCustomer(b.as(), &customerv1.GetCustomerRequest{Id: ada.GetId()})
	require.NoError(t, err, "the right key still reads it")
	require.Equal(t, marked(1).GetEmail(), got.GetEmail())
	wrong.requireCleanLogs(t, []string{marked(1).GetEmail(), marked(2).GetEmail()})
}

// TestErasedByKeyDeletion: deleting a customer's key row (what EraseCustomer
// will do) makes the customer unreadable everywhere, its stored responses
// included, while every other customer works.
func TestErasedByKeyDeletion(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	adaRequest := uuid.NewString()
	ada := b.create(t, marked(1), adaRequest)
	bob := b.create(t, marked(2), "")
	_, err := b.client.GetCustomer(b.as(), &customerv1.GetCustomerRequest{Id: ada.GetId()})
	require.NoError(t, err, "Ada's key is cached now")

	_, err = b.pool.Exec(ctx, `DELETE FROM customer_keys WHERE customer_id = $1`, ada.GetId())
	require.NoError(t, err)

	_, err = b.client.GetCustomer(b.as(), &customerv1.GetCustomerRequest{Id: ada.GetId()})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = b.client.UpdateCustomer(b.as(), &customerv1.UpdateCustomerRequest{Customer: &customerv1.Customer{Id: ada.GetId(), DisplayName: "Back"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}})
	require.Equal(t, codes.NotFound, status.Code(err))
	require.Empty(t, b.lookupEmail(t, marked(1).GetEmail()))
	_, err = b.client.CreateCustomer(b.as(), &customerv1.CreateCustomerRequest{Customer: marked(1), RequestId: adaRequest})
	require.Equal(t, codes.NotFound, status.Code(err), "the stored response went with the key")
	list, err := b.client.ListCustomers(b.as(), &customerv1.ListCustomersRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetCustomers(), 1)
	require.Equal(t, bob.GetId(), list.GetCustomers()[0].GetId())

	got, err := b.client.GetCustomer(b.as(), &customerv1.GetCustomerRequest{Id: bob.GetId()})
	require.NoError(t, err)
	require.Empty(t, cmp.Diff(bob, got, protocmp.Transform()))
	require.Len(t, b.lookupPhone(t, marked(2).GetPhone()), 1)
}

// TestIdempotencyRecords: the stored request fingerprint is keyed, so it is
// not the plain hash a table reader could recompute from a guessed email,
// and it still tells a reused key from a retry.
func TestIdempotencyRecords(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	requestID := uuid.NewString()
	req := &customerv1.CreateCustomerRequest{Customer: marked(1), RequestId: requestID}
	first, err := b.client.CreateCustomer(b.as(), req)
	require.NoError(t, err)

	t.Run("TheFingerprintIsNotAPlainHash", func(t *testing.T) {
		var stored []byte
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT request_hash FROM idempotency_keys WHERE request_id = $1`, requestID).Scan(&stored))
		plain := proto.Clone(req).(*customerv1.CreateCustomerRequest)
		plain.RequestId = ""
		body, err := proto.MarshalOptions{Deterministic: true}.Marshal(plain)
		require.NoError(t, err)
		h := sha256.New()
		h.Write([]byte(customerv1.CustomerService_CreateCustomer_FullMethodName))
		h.Write([]byte{0})
		h.Write(body)
		require.Len(t, stored, sha256.Size)
		require.NotEqual(t, h.Sum(nil), stored)
	})

	t.Run("ARetryGetsTheFirstResponse", func(t *testing.T) {
		again, err := b.client.CreateCustomer(b.as(), req)
		require.NoError(t, err)
		require.Empty(t, cmp.Diff(first, again, protocmp.Transform()))
	})

	t.Run("AReusedKeyWithAnotherPayloadIsRefused", func(t *testing.T) {
		_, err := b.client.CreateCustomer(b.as(), &customerv1.CreateCustomerRequest{Customer: marked(2), RequestId: requestID})
		requireReason(t, err, codes.InvalidArgument, idem.ReasonKeyReused)
	})
}
