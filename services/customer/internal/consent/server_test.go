package consent_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/services/customer/internal/consent"
)

const (
	reasonNoConsent = customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_NO_CONSENT
	reasonWithdrawn = customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_WITHDRAWN
	reasonPending   = customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_PENDING_CONFIRMATION
	reasonQuiet     = customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_QUIET_HOURS
	reasonCap       = customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_FREQUENCY_CAP
)

func TestGovernor(t *testing.T) {
	t.Parallel()
	b := setup(t)

	t.Run("NoConsent", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "Europe/Berlin")
		requireRefused(t, b.check(t, c, email, marketing), reasonNoConsent, "")
		r := b.reserve(t, c, email, marketing, "no-consent-"+c)
		requireRefused(t, r.GetDecision(), reasonNoConsent, "")
		require.Nil(t, r.GetTouch())
	})

	t.Run("Withdrawn", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "Europe/Berlin")
		b.grant(t, c, sms, care)
		require.True(t, b.check(t, c, sms, care).GetAllowed())
		b.set(t, c, sms, care, stateWithdrawn, 0)
		requireRefused(t, b.check(t, c, sms, care), reasonWithdrawn, "")
		requireRefused(t, b.reserve(t, c, sms, care, "withdrawn-"+c).GetDecision(), reasonWithdrawn, "")
	})

	t.Run("PendingDoubleOptIn", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "Europe/Berlin")
		resp := b.set(t, c, email, marketing, stateGranted, basisConsent)
		require.Equal(t, statePending, resp.GetConsent().GetState())
		requireRefused(t, b.check(t, c, email, marketing), reasonPending, "")
	})

	t.Run("UnknownCustomer", func(t *testing.T) {
		t.Parallel()
		unknown := uuid.NewString()
		_, err := b.client.CheckContact(b.as(t, "service"), &customerv1.CheckContactRequest{CustomerId: unknown, Channel: email, Purpose: service})
		requireCode(t, err, codes.NotFound, consent.ErrorReasonCustomerUnknown)
		_, err = b.client.ReserveContact(b.as(t, "service"), &customerv1.ReserveContactRequest{CustomerId: unknown,
			Channel: email, Purpose: service, SourceService: "outreach", Reference: "unknown-1"})
		requireCode(t, err, codes.NotFound, consent.ErrorReasonCustomerUnknown)
		_, err = b.client.RecordContact(b.as(t, "service"), &customerv1.RecordContactRequest{CustomerId: unknown,
			Channel: email, Purpose: service, SourceService: "outreach", Reference: "unknown-2"})
		requireCode(t, err, codes.NotFound, consent.ErrorReasonCustomerUnknown)
		require.Zero(t, b.count(t, `SELECT count(*) FROM contact_settings WHERE customer_id = $1`, unknown))
	})

	t.Run("ServiceOnContractWithoutMarketingConsent", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "Europe/Berlin")
		resp := b.set(t, c, email, service, stateGranted, basisContract)
		require.Equal(t, stateGranted, resp.GetConsent().GetState(), "service needs no double opt-in")
		require.True(t, b.check(t, c, email, service).GetAllowed())
		requireRefused(t, b.check(t, c, email, marketing), reasonNoConsent, "")
		r := b.reserve(t, c, email, service, "order-shipped-"+c)
		require.True(t, r.GetDecision().GetAllowed())
		require.NotEmpty(t, r.GetTouch().GetId())
	})

	t.Run("ServiceWithoutAnyRecordIsOnContract", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		require.True(t, b.check(t, c, phone, service).GetAllowed())
	})

	t.Run("CheckIsADryRun", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		require.True(t, b.check(t, c, phone, service).GetAllowed())
		require.Zero(t, b.count(t, `SELECT count(*) FROM contact_touches WHERE customer_id = $1`, c))
	})
}

// The governor's time-dependent refusals each get their own bundle: they
// move the clock.
func TestGovernorQuietHours(t *testing.T) {
	t.Parallel()

	t.Run("AcrossMidnight", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := b.customer(t, b.tenant, "Europe/Berlin")
		b.grant(t, c, sms, care)
		b.setQuietHours(t, c, "22:00", "07:00")
		b.clock.Set(utc("2024-06-15T21:30:00Z")) // 23:30 CEST
		d := b.check(t, c, sms, care)
		requireRefused(t, d, reasonQuiet, "2024-06-16T05:00:00Z")
		require.Equal(t, "Europe/Berlin", d.GetTimeZone())
		requireRefused(t, b.reserve(t, c, sms, care, "night-"+c).GetDecision(), reasonQuiet, "2024-06-16T05:00:00Z")
		require.Zero(t, b.count(t, `SELECT count(*) FROM contact_touches WHERE customer_id = $1`, c), "a refusal records nothing")

		b.clock.Set(utc("2024-06-15T23:00:00Z")) // 01:00 CEST, after midnight
		requireRefused(t, b.check(t, c, sms, care), reasonQuiet, "2024-06-16T05:00:00Z")
		b.clock.Set(utc("2024-06-16T05:00:00Z")) // 07:00 CEST
		require.True(t, b.reserve(t, c, sms, care, "morning-"+c).GetDecision().GetAllowed())
	})

	t.Run("SpringForwardInBerlin", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := b.customer(t, b.tenant, "Europe/Berlin")
		b.grant(t, c, sms, care)
		b.setQuietHours(t, c, "22:00", "07:00")
		// 00:30 CET on 31 March 2024; at 02:00 the clocks jump to 03:00.
		b.clock.Set(utc("2024-03-30T23:30:00Z"))
		requireRefused(t, b.check(t, c, sms, care), reasonQuiet, "2024-03-31T05:00:00Z") // 07:00 CEST
	})

	t.Run("FallBackInBerlin", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := b.customer(t, b.tenant, "Europe/Berlin")
		b.grant(t, c, sms, care)
		b.setQuietHours(t, c, "22:00", "07:00")
		// 23:30 CEST on 26 October 2024; at 03:00 the clocks go back to 02:00.
		b.clock.Set(utc("2024-10-26T21:30:00Z"))
		requireRefused(t, b.check(t, c, sms, care), reasonQuiet, "2024-10-27T06:00:00Z") // 07:00 CET
	})

	t.Run("EndInTheSkippedHourOpensAtTheJump", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := b.customer(t, b.tenant, "Europe/Berlin")
		b.grant(t, c, sms, care)
		b.setQuietHours(t, c, "22:00", "02:30")
		b.clock.Set(utc("2024-03-31T00:30:00Z")) // 01:30 CET; 02:30 never shows that night
		requireRefused(t, b.check(t, c, sms, care), reasonQuiet, "2024-03-31T01:00:00Z")
	})

	t.Run("TenantDefaultZoneWhenTheCustomerHasNone", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := b.customer(t, b.tenant, "")
		b.grant(t, c, sms, care)
		b.setQuietHours(t, c, "22:00", "07:00")
		b.clock.Set(utc("2024-06-15T22:30:00Z")) // 22:30 UTC, the default default
		requireRefused(t, b.check(t, c, sms, care), reasonQuiet, "2024-06-16T07:00:00Z")

		_, err := b.client.UpdateContactPolicy(b.admin(t), &customerv1.UpdateContactPolicyRequest{
			ContactPolicy: &customerv1.ContactPolicy{DefaultTimeZone: "Asia/Tokyo"},
			UpdateMask:    &fieldmaskpb.FieldMask{Paths: []string{"default_time_zone"}},
		})
		require.NoError(t, err)
		d := b.check(t, c, sms, care) // 07:30 JST
		require.True(t, d.GetAllowed())
		require.Equal(t, "Asia/Tokyo", d.GetTimeZone())
		b.clock.Set(utc("2024-06-15T13:30:00Z")) // 22:30 JST
		requireRefused(t, b.check(t, c, sms, care), reasonQuiet, "2024-06-15T22:00:00Z")
	})
}

func TestGovernorFrequencyCaps(t *testing.T) {
	t.Parallel()

	t.Run("PerPurpose", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := b.customer(t, b.tenant, "Europe/Berlin")
		b.grant(t, c, sms, marketing) // sms needs no double opt-in
		require.True(t, b.reserve(t, c, sms, marketing, "m1-"+c).GetDecision().GetAllowed())
		b.clock.Advance(24 * time.Hour)
		require.True(t, b.reserve(t, c, sms, marketing, "m2-"+c).GetDecision().GetAllowed())
		b.clock.Advance(24 * time.Hour)

		r := b.reserve(t, c, sms, marketing, "m3-"+c)
		requireRefused(t, r.GetDecision(), reasonCap, "2024-06-22T10:00:00Z") // the first one leaves the 7 days
		hit := r.GetDecision().GetFrequencyCap()
		require.False(t, hit.GetGlobal())
		require.Equal(t, marketing, hit.GetPurpose())
		require.Equal(t, int32(2), hit.GetMaxContacts())
		require.Equal(t, int32(2), hit.GetContacts())
		require.Equal(t, 7*24*time.Hour, hit.GetPeriod().AsDuration())
		require.Nil(t, r.GetTouch())
		require.Equal(t, 2, b.count(t, `SELECT count(*) FROM contact_touches WHERE customer_id = $1`, c))

		require.True(t, b.check(t, c, sms, care).GetAllowed() == false, "care has no consent: another refusal")
		b.clock.Set(utc("2024-06-22T10:00:00Z"))
		require.True(t, b.reserve(t, c, sms, marketing, "m3-"+c).GetDecision().GetAllowed())
	})

	t.Run("Global", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := b.customer(t, b.tenant, "Europe/Berlin")
		b.grant(t, c, email, care)
		for i := range 6 {
			b.record(t, c, email, service, fmt.Sprintf("receipt-%d-%s", i, c))
			b.clock.Advance(time.Hour)
		}
		d := b.check(t, c, email, care)
		requireRefused(t, d, reasonCap, "2024-06-22T10:00:00Z")
		require.True(t, d.GetFrequencyCap().GetGlobal())
		require.Equal(t, customerv1.ContactPurpose_CONTACT_PURPOSE_UNSPECIFIED, d.GetFrequencyCap().GetPurpose())
		require.Equal(t, int32(6), d.GetFrequencyCap().GetContacts())
		require.True(t, b.check(t, c, email, service).GetAllowed(), "service is never capped")
	})

	t.Run("TenantPolicyChangesTheCap", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := b.customer(t, b.tenant, "")
		b.grant(t, c, sms, survey)
		require.True(t, b.reserve(t, c, sms, survey, "s1-"+c).GetDecision().GetAllowed())
		requireRefused(t, b.check(t, c, sms, survey), reasonCap, "2024-06-29T10:00:00Z") // 1 per 14 days
		_, err := b.client.UpdateContactPolicy(b.admin(t), &customerv1.UpdateContactPolicyRequest{
			ContactPolicy: &customerv1.ContactPolicy{SurveyCap: &customerv1.FrequencyCap{MaxContacts: 2, Period: durationpb.New(time.Hour)}},
			UpdateMask:    &fieldmaskpb.FieldMask{Paths: []string{"survey_cap"}},
		})
		require.NoError(t, err)
		require.True(t, b.check(t, c, sms, survey).GetAllowed())
	})
}

func TestReserveContact(t *testing.T) {
	t.Parallel()

	t.Run("FiftyConcurrentReservationsAgainstACapOfTwo", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := b.customer(t, b.tenant, "Europe/Berlin")
		b.grant(t, c, sms, marketing)
		var (
			wg               sync.WaitGroup
			mu               sync.Mutex
			allowed, refused int
			errs             []error
		)
		for i := range 50 {
			wg.Go(func() {
				r, err := b.client.ReserveContact(b.as(t, "service"), &customerv1.ReserveContactRequest{
					CustomerId: c, Channel: sms, Purpose: marketing, SourceService: "outreach",
					Reference: fmt.Sprintf("race-%d", i), RequestId: uuid.NewString(),
				})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					errs = append(errs, err)
				case r.GetDecision().GetAllowed():
					allowed++
				case r.GetDecision().GetReason() == reasonCap:
					refused++
				}
			})
		}
		wg.Wait()
		require.Empty(t, errs)
		require.Equal(t, 2, allowed)
		require.Equal(t, 48, refused)
		require.Equal(t, 2, b.count(t, `SELECT count(*) FROM contact_touches WHERE customer_id = $1`, c))
	})

	t.Run("IdempotentByReference", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := b.customer(t, b.tenant, "")
		b.grant(t, c, sms, marketing)
		first := b.reserve(t, c, sms, marketing, "campaign-7")
		require.True(t, first.GetDecision().GetAllowed())
		require.True(t, b.reserve(t, c, sms, marketing, "campaign-8").GetDecision().GetAllowed())
		// The cap is reached now, but campaign-7 is already reserved: a
		// retry without a request id gets the same touch, not a refusal.
		b.clock.Advance(time.Minute)
		again := b.reserve(t, c, sms, marketing, "campaign-7")
		require.True(t, again.GetDecision().GetAllowed())
		require.True(t, proto.Equal(first.GetTouch(), again.GetTouch()), "first %v, again %v", first.GetTouch(), again.GetTouch())
		require.Equal(t, 2, b.count(t, `SELECT count(*) FROM contact_touches WHERE customer_id = $1`, c))
		requireRefused(t, b.reserve(t, c, sms, marketing, "campaign-9").GetDecision(), reasonCap, "2024-06-22T10:00:00Z")
	})

	t.Run("RequestIDReplaysTheFirstAnswer", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := b.customer(t, b.tenant, "")
		req := &customerv1.ReserveContactRequest{CustomerId: c, Channel: sms, Purpose: marketing,
			SourceService: "outreach", Reference: "replayed", RequestId: uuid.NewString()}
		first, err := b.client.ReserveContact(b.as(t, "service"), req)
		require.NoError(t, err)
		requireRefused(t, first.GetDecision(), reasonNoConsent, "")
		b.grant(t, c, sms, marketing)
		again, err := b.client.ReserveContact(b.as(t, "service"), req)
		require.NoError(t, err)
		require.True(t, proto.Equal(first, again), "a retry gets the first response")

		req.Reference = "another"
		_, err = b.client.ReserveContact(b.as(t, "service"), req)
		requireCode(t, err, codes.InvalidArgument, idem.ReasonKeyReused)
		requireField(t, err, "request_id")
	})

	t.Run("ReferenceOfAnotherContactConflicts", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c1, c2 := b.customer(t, b.tenant, ""), b.customer(t, b.tenant, "")
		require.True(t, b.reserve(t, c1, email, service, "shared-ref").GetDecision().GetAllowed())
		_, err := b.client.ReserveContact(b.as(t, "service"), &customerv1.ReserveContactRequest{CustomerId: c2,
			Channel: email, Purpose: service, SourceService: "outreach", Reference: "shared-ref"})
		requireCode(t, err, codes.AlreadyExists, consent.ErrorReasonReferenceConflict)
		_, err = b.client.ReserveContact(b.as(t, "service"), &customerv1.ReserveContactRequest{CustomerId: c1,
			Channel: sms, Purpose: service, SourceService: "outreach", Reference: "shared-ref"})
		requireCode(t, err, codes.AlreadyExists, consent.ErrorReasonReferenceConflict)
		// Another source service may use the same reference.
		_, err = b.client.ReserveContact(b.as(t, "service"), &customerv1.ReserveContactRequest{CustomerId: c2,
			Channel: email, Purpose: service, SourceService: "survey", Reference: "shared-ref"})
		require.NoError(t, err)
	})
}

func TestRecordContact(t *testing.T) {
	t.Parallel()
	b := setup(t)

	t.Run("IdempotentByReference", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		req := &customerv1.RecordContactRequest{CustomerId: c, Channel: phone, Purpose: care,
			SourceService: "ticket", Reference: "call-" + c, RequestId: uuid.NewString()}
		first, err := b.client.RecordContact(b.as(t, "agent"), req)
		require.NoError(t, err)
		req.RequestId = uuid.NewString() // a retry that lost its request id
		again, err := b.client.RecordContact(b.as(t, "agent"), req)
		require.NoError(t, err)
		require.True(t, proto.Equal(first, again))
		req.RequestId = ""
		third, err := b.client.RecordContact(b.as(t, "agent"), req)
		require.NoError(t, err)
		require.True(t, proto.Equal(first, third))
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM contact_touches WHERE customer_id = $1`, c))
		require.Equal(t, "agent@test", func() string {
			var actor string
			require.NoError(t, b.pool.QueryRow(t.Context(), `SELECT actor FROM contact_touches WHERE customer_id = $1`, c).Scan(&actor))
			return actor
		}())
	})

	t.Run("RecordsWhatTheGovernorWouldRefuse", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		b.record(t, c, sms, marketing, "desk-1-"+c)
		b.record(t, c, sms, marketing, "desk-2-"+c)
		b.grant(t, c, sms, marketing)
		requireRefused(t, b.check(t, c, sms, marketing), reasonCap, "2024-06-22T10:00:00Z")
	})

	t.Run("ConcurrentFirstUseOfACustomer", func(t *testing.T) {
		t.Parallel()
		// Twenty writers race to create the customer's lock row; each
		// queues behind the first and none fails.
		c := b.customer(t, b.tenant, "")
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := range 20 {
			wg.Go(func() {
				_, err := b.client.RecordContact(b.as(t, "service"), &customerv1.RecordContactRequest{CustomerId: c,
					Channel: email, Purpose: service, SourceService: "outreach", Reference: fmt.Sprintf("first-use-%d-%s", i, c)})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Equal(t, 20, b.count(t, `SELECT count(*) FROM contact_touches WHERE customer_id = $1`, c))
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM contact_settings WHERE customer_id = $1`, c))
	})

	t.Run("ConflictingReference", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		b.record(t, c, sms, care, "letter-"+c)
		_, err := b.client.RecordContact(b.as(t, "service"), &customerv1.RecordContactRequest{CustomerId: c,
			Channel: sms, Purpose: survey, SourceService: "outreach", Reference: "letter-" + c})
		requireCode(t, err, codes.AlreadyExists, consent.ErrorReasonReferenceConflict)
	})
}

func TestDoubleOptIn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	confirm := func(t *testing.T, token string) (*customerv1.Consent, error) {
		return b.client.ConfirmConsent(b.as(t, "service"), &customerv1.ConfirmConsentRequest{Token: token})
	}
	stateOf := func(t *testing.T, c string) customerv1.ConsentState {
		resp, err := b.client.GetConsents(b.as(t, "agent"), &customerv1.GetConsentsRequest{CustomerId: c})
		require.NoError(t, err)
		for _, x := range resp.GetConsents() {
			if x.GetChannel() == email && x.GetPurpose() == marketing {
				return x.GetState()
			}
		}
		return customerv1.ConsentState_CONSENT_STATE_UNSPECIFIED
	}

	t.Run("PendingUntilConfirmedOnce", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		resp := b.set(t, c, email, marketing, stateGranted, basisConsent)
		require.Equal(t, statePending, resp.GetConsent().GetState())
		require.Regexp(t, `^cc_[A-Za-z0-9_-]{43}$`, resp.GetConfirmationToken())
		require.Equal(t, b.clock.Now().Add(72*time.Hour), resp.GetConfirmationExpireTime().AsTime())
		requireRefused(t, b.check(t, c, email, marketing), reasonPending, "")

		got, err := confirm(t, resp.GetConfirmationToken())
		require.NoError(t, err)
		require.Equal(t, stateGranted, got.GetState())
		require.Equal(t, consent.ConfirmSource, got.GetSource())
		require.Equal(t, basisConsent, got.GetLegalBasis())
		require.True(t, b.check(t, c, email, marketing).GetAllowed())

		_, err = confirm(t, resp.GetConfirmationToken())
		requireCode(t, err, codes.FailedPrecondition, consent.ErrorReasonTokenUsed)
	})

	t.Run("RegrantWhileGrantedNeedsNoConfirmation", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		b.grant(t, c, email, marketing)
		resp := b.set(t, c, email, marketing, stateGranted, basisConsent)
		require.Equal(t, stateGranted, resp.GetConsent().GetState())
		require.Empty(t, resp.GetConfirmationToken())
	})

	t.Run("ConcurrentConfirmationsGrantOnce", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		token := b.set(t, c, email, marketing, stateGranted, basisConsent).GetConfirmationToken()
		var wg sync.WaitGroup
		codesSeen := make(chan codes.Code, 10)
		for range 10 {
			wg.Go(func() {
				_, err := confirm(t, token)
				codesSeen <- grpcstatus.Code(err)
			})
		}
		wg.Wait()
		close(codesSeen)
		ok := 0
		for c := range codesSeen {
			if c == codes.OK {
				ok++
			} else {
				require.Equal(t, codes.FailedPrecondition, c)
			}
		}
		require.Equal(t, 1, ok)
		require.Equal(t, 2, b.count(t, `SELECT count(*) FROM consent_events WHERE customer_id = $1`, c))
	})

	t.Run("ExpiredTokenIsRefused", func(t *testing.T) {
		t.Parallel()
		b := setup(t) // moves the clock
		c := b.customer(t, b.tenant, "")
		token := b.set(t, c, email, marketing, stateGranted, basisConsent).GetConfirmationToken()
		b.clock.Advance(72 * time.Hour)
		_, err := b.client.ConfirmConsent(b.as(t, "service"), &customerv1.ConfirmConsentRequest{Token: token})
		requireCode(t, err, codes.FailedPrecondition, consent.ErrorReasonTokenExpired)
		requireRefused(t, b.check(t, c, email, marketing), reasonPending, "")
	})

	t.Run("ValidUpToItsLastMoment", func(t *testing.T) {
		t.Parallel()
		b := setup(t) // moves the clock
		c := b.customer(t, b.tenant, "")
		token := b.set(t, c, email, marketing, stateGranted, basisConsent).GetConfirmationToken()
		b.clock.Advance(72*time.Hour - time.Microsecond)
		_, err := b.client.ConfirmConsent(b.as(t, "service"), &customerv1.ConfirmConsentRequest{Token: token})
		require.NoError(t, err)
	})

	t.Run("RegrantSupersedesTheEarlierToken", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		first := b.set(t, c, email, marketing, stateGranted, basisConsent).GetConfirmationToken()
		second := b.set(t, c, email, marketing, stateGranted, basisConsent).GetConfirmationToken()
		require.NotEqual(t, first, second)
		_, err := confirm(t, first)
		requireCode(t, err, codes.FailedPrecondition, consent.ErrorReasonTokenSuperseded)
		_, err = confirm(t, second)
		require.NoError(t, err)
	})

	t.Run("WithdrawalVoidsTheToken", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		token := b.set(t, c, email, marketing, stateGranted, basisConsent).GetConfirmationToken()
		b.set(t, c, email, marketing, stateWithdrawn, 0)
		_, err := confirm(t, token)
		requireCode(t, err, codes.FailedPrecondition, consent.ErrorReasonTokenSuperseded)
		require.Equal(t, stateWithdrawn, stateOf(t, c))
	})

	t.Run("UnknownToken", func(t *testing.T) {
		t.Parallel()
		token, _ := consent.NewToken()
		_, err := confirm(t, token)
		requireCode(t, err, codes.NotFound, "")
	})

	t.Run("AnotherTenantsServiceCannotConfirm", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		token := b.set(t, c, email, marketing, stateGranted, basisConsent).GetConfirmationToken()
		_, err := b.client.ConfirmConsent(asTenant(t, uuid.NewString(), "service"), &customerv1.ConfirmConsentRequest{Token: token})
		requireCode(t, err, codes.NotFound, "")
		require.Equal(t, statePending, stateOf(t, c))
	})

	t.Run("OnlyServicesConfirm", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		token := b.set(t, c, email, marketing, stateGranted, basisConsent).GetConfirmationToken()
		_, err := b.client.ConfirmConsent(b.as(t, "admin", "agent", "supervisor"), &customerv1.ConfirmConsentRequest{Token: token})
		requireCode(t, err, codes.PermissionDenied, "")
	})

	t.Run("TokenIsStoredHashedOnly", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		req := &customerv1.SetConsentRequest{CustomerId: c, Channel: email, Purpose: marketing, State: stateGranted,
			LegalBasis: basisConsent, Source: "web-form", RequestId: uuid.NewString()}
		resp, err := b.client.SetConsent(b.as(t, "agent"), req)
		require.NoError(t, err)
		token := resp.GetConfirmationToken()
		require.NotEmpty(t, token)

		// Every column of every table of the schema, as text and as hex
		// (bytea shows as hex), the idempotency keys and the outbox included.
		hexToken := fmt.Sprintf("%x", token)
		require.Zero(t, scanSchema(t, b, token), "the raw token is stored somewhere")
		require.Zero(t, scanSchema(t, b, hexToken), "the raw token is stored as bytes somewhere")
		hash := consent.HashToken(token)
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM consent_tokens WHERE token_hash = $1`, hash[:]))

		again, err := b.client.SetConsent(b.as(t, "agent"), req)
		require.NoError(t, err)
		require.Empty(t, again.GetConfirmationToken(), "a replay cannot repeat what was never stored")
		require.True(t, proto.Equal(resp.GetConsent(), again.GetConsent()))
		require.Equal(t, resp.GetConfirmationExpireTime().AsTime(), again.GetConfirmationExpireTime().AsTime())
	})
}

// scanSchema counts the rows of any table in the customer schema with any
// column whose text form contains needle.
func scanSchema(t *testing.T, b *testBundle, needle string) int {
	t.Helper()
	rows, err := b.pool.Query(t.Context(), `SELECT table_name FROM information_schema.tables
		WHERE table_schema = 'customer' AND table_type = 'BASE TABLE'`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, tables, "consent_tokens")
	require.Contains(t, tables, "idempotency_keys")
	hits := 0
	for _, table := range tables {
		hits += b.count(t, fmt.Sprintf(`SELECT count(*) FROM %s t WHERE strpos(t::text, $1) > 0`, pgx.Identifier{table}.Sanitize()), needle)
	}
	return hits
}

func TestConsentHistory(t *testing.T) {
	t.Parallel()
	b := setup(t)

	t.Run("AppendOnlyAndComplete", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		b.set(t, c, sms, care, stateGranted, basisConsent)                                                                            // 1
		b.set(t, c, sms, care, stateWithdrawn, 0)                                                                                     // 2
		token := b.set(t, c, email, marketing, stateGranted, basisConsent)                                                            // 3 pending
		_, err := b.client.ConfirmConsent(b.as(t, "service"), &customerv1.ConfirmConsentRequest{Token: token.GetConfirmationToken()}) // 4
		require.NoError(t, err)
		b.set(t, c, email, service, stateGranted, basisContract) // 5

		var events []*customerv1.ConsentEvent
		tok := ""
		for range 10 {
			resp, err := b.client.ListConsentEvents(b.as(t, "supervisor"), &customerv1.ListConsentEventsRequest{
				CustomerId: c, PageSize: 2, PageToken: tok})
			require.NoError(t, err)
			require.LessOrEqual(t, len(resp.GetConsentEvents()), 2)
			events = append(events, resp.GetConsentEvents()...)
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		type row struct {
			version     int64
			ch          customerv1.ContactChannel
			p           customerv1.ContactPurpose
			state, prev customerv1.ConsentState
			source      string
		}
		var got []row
		for _, e := range events {
			got = append(got, row{e.GetVersion(), e.GetChannel(), e.GetPurpose(), e.GetState(), e.GetPreviousState(), e.GetSource()})
			require.Equal(t, c, e.GetCustomerId())
			require.NotEmpty(t, e.GetActor())
		}
		none := customerv1.ConsentState_CONSENT_STATE_UNSPECIFIED
		require.Equal(t, []row{
			{5, email, service, stateGranted, none, "web-form"},
			{4, email, marketing, stateGranted, statePending, consent.ConfirmSource},
			{3, email, marketing, statePending, none, "web-form"},
			{2, sms, care, stateWithdrawn, stateGranted, "web-form"},
			{1, sms, care, stateGranted, none, "web-form"},
		}, got)

		cur, err := b.client.GetConsents(b.as(t, "marketer"), &customerv1.GetConsentsRequest{CustomerId: c})
		require.NoError(t, err)
		require.Equal(t, int64(5), cur.GetVersion())
		require.Len(t, cur.GetConsents(), 3)
		// Each current state is its pair's latest event.
		require.Zero(t, b.count(t, `SELECT count(*) FROM consent_states s WHERE s.customer_id = $1 AND (s.version, s.state) <>
			(SELECT e.version, e.state FROM consent_events e WHERE e.tenant_id = s.tenant_id AND e.customer_id = s.customer_id
			 AND e.channel = s.channel AND e.purpose = s.purpose ORDER BY e.version DESC LIMIT 1)`, c))
	})

	t.Run("TheDatabaseRefusesRewritingHistory", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		b.set(t, c, sms, care, stateGranted, basisConsent)
		for _, stmt := range []string{
			`UPDATE consent_events SET state = 'withdrawn' WHERE customer_id = '` + c + `'`,
			`DELETE FROM consent_events WHERE customer_id = '` + c + `'`,
			`TRUNCATE consent_events CASCADE`,
		} {
			_, err := b.pool.Exec(t.Context(), stmt)
			require.Error(t, err, stmt)
			require.Equal(t, "42501", sqlState(err), stmt)
		}
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM consent_events WHERE customer_id = $1 AND state = 'granted'`, c))
	})

	t.Run("AnOlderDecisionDoesNotOverrideALaterOne", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		b.set(t, c, sms, marketing, stateWithdrawn, 0)
		_, err := b.client.SetConsent(b.as(t, "service"), &customerv1.SetConsentRequest{CustomerId: c, Channel: sms,
			Purpose: marketing, State: stateGranted, LegalBasis: basisConsent, Source: "import",
			CaptureTime: timestamppb.New(b.clock.Now().Add(-30 * 24 * time.Hour))})
		requireCode(t, err, codes.FailedPrecondition, consent.ErrorReasonOutdated)
		requireRefused(t, b.check(t, c, sms, marketing), reasonWithdrawn, "")
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM consent_events WHERE customer_id = $1`, c))
	})

	t.Run("IdempotentSetRecordsOnce", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "")
		req := &customerv1.SetConsentRequest{CustomerId: c, Channel: sms, Purpose: care, State: stateGranted,
			LegalBasis: basisConsent, Source: "web-form", RequestId: uuid.NewString()}
		first, err := b.client.SetConsent(b.as(t, "agent"), req)
		require.NoError(t, err)
		again, err := b.client.SetConsent(b.as(t, "agent"), req)
		require.NoError(t, err)
		require.True(t, proto.Equal(first, again))
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM consent_events WHERE customer_id = $1`, c))
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE aggregate_id = $1`, c))
		var rid uuid.UUID
		require.NoError(t, b.pool.QueryRow(t.Context(), `SELECT request_id FROM consent_events WHERE customer_id = $1`, c).Scan(&rid))
		require.Equal(t, req.GetRequestId(), rid.String())

		req.State = stateWithdrawn
		_, err = b.client.SetConsent(b.as(t, "agent"), req)
		requireCode(t, err, codes.InvalidArgument, idem.ReasonKeyReused)
	})
}

func TestConsentChangedEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.customer(t, b.tenant, "")
	b.set(t, c, sms, care, stateGranted, basisConsent)
	pending := b.set(t, c, email, marketing, stateGranted, basisConsent)
	b.clock.Advance(time.Hour)
	_, err := b.client.ConfirmConsent(b.as(t, "service"), &customerv1.ConfirmConsentRequest{Token: pending.GetConfirmationToken()})
	require.NoError(t, err)
	b.set(t, c, sms, care, stateWithdrawn, 0)
	b.reserve(t, c, email, marketing, "no-event-"+c) // touches publish nothing

	rows, err := b.pool.Query(t.Context(), `SELECT tenant_id, subject, aggregate_type, aggregate_id, aggregate_version,
		event_type, payload, occurred_at FROM outbox ORDER BY seq`)
	require.NoError(t, err)
	type outboxRow struct {
		Tenant                  uuid.UUID
		Subject, AggType, AggID string
		Version                 int64
		EventType               string
		Payload                 []byte
		OccurredAt              time.Time
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[outboxRow])
	require.NoError(t, err)
	require.Len(t, got, 4)

	historyIDs := map[int64]string{}
	hrows, err := b.pool.Query(t.Context(), `SELECT version, id::text FROM consent_events WHERE customer_id = $1`, c)
	require.NoError(t, err)
	for hrows.Next() {
		var v int64
		var id string
		require.NoError(t, hrows.Scan(&v, &id))
		historyIDs[v] = id
	}
	require.NoError(t, hrows.Err())

	want := []struct {
		ch          customerv1.ContactChannel
		p           customerv1.ContactPurpose
		state, prev customerv1.ConsentState
	}{
		{sms, care, stateGranted, customerv1.ConsentState_CONSENT_STATE_UNSPECIFIED},
		{email, marketing, statePending, customerv1.ConsentState_CONSENT_STATE_UNSPECIFIED},
		{email, marketing, stateGranted, statePending},
		{sms, care, stateWithdrawn, stateGranted},
	}
	for i, r := range got {
		version := int64(i + 1)
		require.Equal(t, b.tenant, r.Tenant.String())
		require.Equal(t, consent.SubjectChanged, r.Subject)
		require.Equal(t, consent.AggregateType, r.AggType)
		require.Equal(t, c, r.AggID)
		require.Equal(t, version, r.Version, "versions count the customer's decisions in order")
		require.Equal(t, "rapport.customer.v1.ConsentChanged", r.EventType)
		ev := &customerv1.ConsentChanged{}
		require.NoError(t, proto.Unmarshal(r.Payload, ev))
		require.Equal(t, b.tenant, ev.GetTenantId())
		require.Equal(t, c, ev.GetCustomerId())
		require.Equal(t, version, ev.GetAggregateVersion())
		require.Equal(t, historyIDs[version], ev.GetConsentEventId())
		require.Equal(t, want[i].ch, ev.GetChannel())
		require.Equal(t, want[i].p, ev.GetPurpose())
		require.Equal(t, want[i].state, ev.GetState())
		require.Equal(t, want[i].prev, ev.GetPreviousState())
		require.Equal(t, r.OccurredAt.UTC(), ev.GetOccurredAt().AsTime())
		require.NotEqual(t, basisContract, ev.GetLegalBasis())
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.customer(t, b.tenant, "Europe/Berlin")
	b.grant(t, c, sms, care)
	b.setQuietHours(t, c, "22:00", "07:00")
	other := asTenant(t, uuid.NewString(), "admin", "service")

	calls := map[string]func() error{
		"GetConsents": func() error {
			_, err := b.client.GetConsents(other, &customerv1.GetConsentsRequest{CustomerId: c})
			return err
		},
		"SetConsent": func() error {
			_, err := b.client.SetConsent(other, &customerv1.SetConsentRequest{CustomerId: c, Channel: sms, Purpose: care,
				State: stateWithdrawn, Source: "agent"})
			return err
		},
		"ListConsentEvents": func() error {
			_, err := b.client.ListConsentEvents(other, &customerv1.ListConsentEventsRequest{CustomerId: c})
			return err
		},
		"GetContactPreferences": func() error {
			_, err := b.client.GetContactPreferences(other, &customerv1.GetContactPreferencesRequest{CustomerId: c})
			return err
		},
		"UpdateContactPreferences": func() error {
			_, err := b.client.UpdateContactPreferences(other, &customerv1.UpdateContactPreferencesRequest{
				ContactPreferences: &customerv1.ContactPreferences{CustomerId: c},
				UpdateMask:         &fieldmaskpb.FieldMask{Paths: []string{"quiet_hours"}}})
			return err
		},
		"CheckContact": func() error {
			_, err := b.client.CheckContact(other, &customerv1.CheckContactRequest{CustomerId: c, Channel: sms, Purpose: service})
			return err
		},
		"ReserveContact": func() error {
			_, err := b.client.ReserveContact(other, &customerv1.ReserveContactRequest{CustomerId: c, Channel: sms,
				Purpose: service, SourceService: "outreach", Reference: "cross-tenant"})
			return err
		},
		"RecordContact": func() error {
			_, err := b.client.RecordContact(other, &customerv1.RecordContactRequest{CustomerId: c, Channel: sms,
				Purpose: service, SourceService: "outreach", Reference: "cross-tenant"})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name+"IsNotFound", func(t *testing.T) {
			t.Parallel()
			requireCode(t, call(), codes.NotFound, consent.ErrorReasonCustomerUnknown)
		})
	}

	t.Run("NothingChangedInTheOwnersTenant", func(t *testing.T) {
		t.Parallel()
		// Runs alongside the calls above; whatever order, none may land.
		for _, call := range calls {
			_ = call()
		}
		require.True(t, b.check(t, c, sms, care).GetAllowed() || b.check(t, c, sms, care).GetReason() == reasonQuiet)
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM consent_events WHERE customer_id = $1`, c))
		require.Zero(t, b.count(t, `SELECT count(*) FROM contact_touches WHERE customer_id = $1`, c))
		prefs, err := b.client.GetContactPreferences(b.as(t, "agent"), &customerv1.GetContactPreferencesRequest{CustomerId: c})
		require.NoError(t, err)
		require.Equal(t, "22:00", prefs.GetQuietHours().GetStartTime())
		require.Zero(t, b.count(t, `SELECT count(*) FROM contact_settings WHERE tenant_id <> $1`, b.tenant))
	})

	t.Run("PoliciesArePerTenant", func(t *testing.T) {
		t.Parallel()
		_, err := b.client.UpdateContactPolicy(other, &customerv1.UpdateContactPolicyRequest{
			ContactPolicy: &customerv1.ContactPolicy{MarketingCap: &customerv1.FrequencyCap{MaxContacts: 100, Period: durationpb.New(time.Hour)}},
			UpdateMask:    &fieldmaskpb.FieldMask{Paths: []string{"marketing_cap"}},
		})
		require.NoError(t, err)
		mine, err := b.client.GetContactPolicy(b.admin(t), &customerv1.GetContactPolicyRequest{})
		require.NoError(t, err)
		require.Equal(t, int32(2), mine.GetMarketingCap().GetMaxContacts())
		theirs, err := b.client.GetContactPolicy(other, &customerv1.GetContactPolicyRequest{})
		require.NoError(t, err)
		require.Equal(t, int32(100), theirs.GetMarketingCap().GetMaxContacts())
	})
}

func TestBadInputNamesTheField(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.customer(t, b.tenant, "")
	ctx := b.admin(t)
	setReq := func(mut func(*customerv1.SetConsentRequest)) *customerv1.SetConsentRequest {
		r := &customerv1.SetConsentRequest{CustomerId: c, Channel: sms, Purpose: care, State: stateGranted,
			LegalBasis: basisConsent, Source: "web-form"}
		mut(r)
		return r
	}
	reserveReq := func(mut func(*customerv1.ReserveContactRequest)) *customerv1.ReserveContactRequest {
		r := &customerv1.ReserveContactRequest{CustomerId: c, Channel: sms, Purpose: care, SourceService: "outreach", Reference: "r-1"}
		mut(r)
		return r
	}
	prefsReq := func(p *customerv1.ContactPreferences, paths ...string) *customerv1.UpdateContactPreferencesRequest {
		p.CustomerId = c
		return &customerv1.UpdateContactPreferencesRequest{ContactPreferences: p, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}}
	}
	policyReq := func(p *customerv1.ContactPolicy, paths ...string) *customerv1.UpdateContactPolicyRequest {
		return &customerv1.UpdateContactPolicyRequest{ContactPolicy: p, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}}
	}

	cases := []struct {
		name  string
		field string
		call  func() error
	}{
		{"SetCustomerID", "customer_id", func() error {
			_, err := b.client.SetConsent(ctx, setReq(func(r *customerv1.SetConsentRequest) { r.CustomerId = "not-a-uuid" }))
			return err
		}},
		{"SetChannel", "channel", func() error {
			_, err := b.client.SetConsent(ctx, setReq(func(r *customerv1.SetConsentRequest) { r.Channel = 0 }))
			return err
		}},
		{"SetUndefinedPurpose", "purpose", func() error {
			_, err := b.client.SetConsent(ctx, setReq(func(r *customerv1.SetConsentRequest) { r.Purpose = 99 }))
			return err
		}},
		{"SetPending", "state", func() error {
			_, err := b.client.SetConsent(ctx, setReq(func(r *customerv1.SetConsentRequest) { r.State = statePending }))
			return err
		}},
		{"SetSource", "source", func() error {
			_, err := b.client.SetConsent(ctx, setReq(func(r *customerv1.SetConsentRequest) { r.Source = "Web Form" }))
			return err
		}},
		{"GrantWithoutBasis", "legal_basis", func() error {
			_, err := b.client.SetConsent(ctx, setReq(func(r *customerv1.SetConsentRequest) { r.LegalBasis = 0 }))
			return err
		}},
		{"ContractForCare", "legal_basis", func() error {
			_, err := b.client.SetConsent(ctx, setReq(func(r *customerv1.SetConsentRequest) { r.LegalBasis = basisContract }))
			return err
		}},
		{"CaptureInTheFuture", "capture_time", func() error {
			_, err := b.client.SetConsent(ctx, setReq(func(r *customerv1.SetConsentRequest) {
				r.CaptureTime = timestamppb.New(b.clock.Now().Add(time.Hour))
			}))
			return err
		}},
		{"SetRequestID", "request_id", func() error {
			_, err := b.client.SetConsent(ctx, setReq(func(r *customerv1.SetConsentRequest) { r.RequestId = "42" }))
			return err
		}},
		{"ReserveReference", "reference", func() error {
			_, err := b.client.ReserveContact(ctx, reserveReq(func(r *customerv1.ReserveContactRequest) { r.Reference = "" }))
			return err
		}},
		{"ReserveReferenceWithSpaces", "reference", func() error {
			_, err := b.client.ReserveContact(ctx, reserveReq(func(r *customerv1.ReserveContactRequest) { r.Reference = "a b" }))
			return err
		}},
		{"ReserveSourceService", "source_service", func() error {
			_, err := b.client.ReserveContact(ctx, reserveReq(func(r *customerv1.ReserveContactRequest) { r.SourceService = "Outreach!" }))
			return err
		}},
		{"RecordPurpose", "purpose", func() error {
			_, err := b.client.RecordContact(ctx, &customerv1.RecordContactRequest{CustomerId: c, Channel: sms,
				SourceService: "outreach", Reference: "x"})
			return err
		}},
		{"CheckCustomerID", "customer_id", func() error {
			_, err := b.client.CheckContact(ctx, &customerv1.CheckContactRequest{CustomerId: "", Channel: sms, Purpose: care})
			return err
		}},
		{"ConfirmToken", "token", func() error {
			_, err := b.client.ConfirmConsent(b.as(t, "service"), &customerv1.ConfirmConsentRequest{Token: "cc_short"})
			return err
		}},
		{"EventsPageToken", "page_token", func() error {
			_, err := b.client.ListConsentEvents(ctx, &customerv1.ListConsentEventsRequest{CustomerId: c, PageToken: "garbage!"})
			return err
		}},
		{"EventsNegativePageSize", "page_size", func() error {
			_, err := b.client.ListConsentEvents(ctx, &customerv1.ListConsentEventsRequest{CustomerId: c, PageSize: -1})
			return err
		}},
		{"QuietHoursStart", "contact_preferences.quiet_hours.start_time", func() error {
			_, err := b.client.UpdateContactPreferences(ctx, prefsReq(&customerv1.ContactPreferences{
				QuietHours: &customerv1.QuietHours{StartTime: "25:00", EndTime: "07:00"}}, "quiet_hours"))
			return err
		}},
		{"QuietHoursEmptyWindow", "contact_preferences.quiet_hours.end_time", func() error {
			_, err := b.client.UpdateContactPreferences(ctx, prefsReq(&customerv1.ContactPreferences{
				QuietHours: &customerv1.QuietHours{StartTime: "07:00", EndTime: "07:00"}}, "quiet_hours"))
			return err
		}},
		{"PreferredChannelsRepeated", "contact_preferences.preferred_channels", func() error {
			_, err := b.client.UpdateContactPreferences(ctx, prefsReq(&customerv1.ContactPreferences{
				PreferredChannels: []customerv1.ContactChannel{sms, sms}}, "preferred_channels"))
			return err
		}},
		{"PreferencesWildcardMask", "update_mask", func() error {
			_, err := b.client.UpdateContactPreferences(ctx, prefsReq(&customerv1.ContactPreferences{}, "*"))
			return err
		}},
		{"PreferencesUnknownSubpathMask", "update_mask", func() error {
			_, err := b.client.UpdateContactPreferences(ctx, prefsReq(&customerv1.ContactPreferences{}, "customer_id.x"))
			return err
		}},
		{"PreferencesOutputOnlyMask", "update_mask", func() error {
			_, err := b.client.UpdateContactPreferences(ctx, prefsReq(&customerv1.ContactPreferences{}, "time_zone"))
			return err
		}},
		{"PolicyZone", "contact_policy.default_time_zone", func() error {
			_, err := b.client.UpdateContactPolicy(ctx, policyReq(&customerv1.ContactPolicy{DefaultTimeZone: "Mars/Base"}, "default_time_zone"))
			return err
		}},
		{"PolicyCapPeriod", "contact_policy.care_cap.period", func() error {
			_, err := b.client.UpdateContactPolicy(ctx, policyReq(&customerv1.ContactPolicy{
				CareCap: &customerv1.FrequencyCap{MaxContacts: 1, Period: durationpb.New(time.Minute)}}, "care_cap"))
			return err
		}},
		{"PolicyCapMax", "contact_policy.global_cap.max_contacts", func() error {
			_, err := b.client.UpdateContactPolicy(ctx, policyReq(&customerv1.ContactPolicy{
				GlobalCap: &customerv1.FrequencyCap{MaxContacts: 5000}}, "global_cap"))
			return err
		}},
		{"PolicyEmptyMask", "update_mask", func() error {
			_, err := b.client.UpdateContactPolicy(ctx, policyReq(&customerv1.ContactPolicy{}))
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			requireField(t, tc.call(), tc.field)
		})
	}

	t.Run("NothingWasWritten", func(t *testing.T) {
		// Not parallel: runs after the cases above finished.
		require.Zero(t, b.count(t, `SELECT count(*) FROM consent_events`))
		require.Zero(t, b.count(t, `SELECT count(*) FROM contact_touches`))
		require.Zero(t, b.count(t, `SELECT count(*) FROM contact_policies`))
	})
}

func TestRoles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.customer(t, b.tenant, "")
	denied := []struct {
		name string
		call func() error
	}{
		{"MarketerCannotSetConsent", func() error {
			_, err := b.client.SetConsent(b.as(t, "marketer"), &customerv1.SetConsentRequest{CustomerId: c, Channel: sms,
				Purpose: marketing, State: stateGranted, LegalBasis: basisConsent, Source: "web-form"})
			return err
		}},
		{"AnalystCannotCheck", func() error {
			_, err := b.client.CheckContact(b.as(t, "analyst"), &customerv1.CheckContactRequest{CustomerId: c, Channel: sms, Purpose: care})
			return err
		}},
		{"AgentCannotChangeThePolicy", func() error {
			_, err := b.client.UpdateContactPolicy(b.as(t, "agent", "supervisor", "service"), &customerv1.UpdateContactPolicyRequest{
				ContactPolicy: &customerv1.ContactPolicy{DefaultTimeZone: "UTC"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"default_time_zone"}}})
			return err
		}},
		{"MarketerCannotReadHistory", func() error {
			_, err := b.client.ListConsentEvents(b.as(t, "marketer"), &customerv1.ListConsentEventsRequest{CustomerId: c})
			return err
		}},
	}
	for _, d := range denied {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			requireCode(t, d.call(), codes.PermissionDenied, "")
		})
	}
}

func TestPreferencesAndPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t)

	t.Run("Preferences", func(t *testing.T) {
		t.Parallel()
		c := b.customer(t, b.tenant, "America/New_York")
		p, err := b.client.GetContactPreferences(b.as(t, "marketer"), &customerv1.GetContactPreferencesRequest{CustomerId: c})
		require.NoError(t, err)
		require.Nil(t, p.GetQuietHours())
		require.Empty(t, p.GetPreferredChannels())
		require.Equal(t, "America/New_York", p.GetTimeZone())
		require.Nil(t, p.GetUpdateTime())

		updated, err := b.client.UpdateContactPreferences(b.as(t, "agent"), &customerv1.UpdateContactPreferencesRequest{
			ContactPreferences: &customerv1.ContactPreferences{CustomerId: c,
				QuietHours:        &customerv1.QuietHours{StartTime: "21:30", EndTime: "08:00"},
				PreferredChannels: []customerv1.ContactChannel{sms, email}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"quiet_hours", "preferred_channels"}},
		})
		require.NoError(t, err)
		require.Equal(t, "21:30", updated.GetQuietHours().GetStartTime())
		require.Equal(t, "08:00", updated.GetQuietHours().GetEndTime())
		require.Equal(t, []customerv1.ContactChannel{sms, email}, updated.GetPreferredChannels())
		require.Equal(t, b.clock.Now(), updated.GetUpdateTime().AsTime())
		read, err := b.client.GetContactPreferences(b.as(t, "agent"), &customerv1.GetContactPreferencesRequest{CustomerId: c})
		require.NoError(t, err)
		require.True(t, proto.Equal(updated, read), "updated %v, read %v", updated, read)

		// A mask derived from a PATCH body names sub-fields; they select the
		// whole quiet hours.
		derived, err := b.client.UpdateContactPreferences(b.as(t, "agent"), &customerv1.UpdateContactPreferencesRequest{
			ContactPreferences: &customerv1.ContactPreferences{CustomerId: c,
				QuietHours: &customerv1.QuietHours{StartTime: "22:00", EndTime: "07:30"}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"quiet_hours.start_time", "quiet_hours.end_time"}},
		})
		require.NoError(t, err)
		require.Equal(t, "22:00", derived.GetQuietHours().GetStartTime())
		require.Equal(t, "07:30", derived.GetQuietHours().GetEndTime())

		cleared, err := b.client.UpdateContactPreferences(b.as(t, "agent"), &customerv1.UpdateContactPreferencesRequest{
			ContactPreferences: &customerv1.ContactPreferences{CustomerId: c},
			UpdateMask:         &fieldmaskpb.FieldMask{Paths: []string{"quiet_hours"}},
		})
		require.NoError(t, err)
		require.Nil(t, cleared.GetQuietHours())
		require.Equal(t, []customerv1.ContactChannel{sms, email}, cleared.GetPreferredChannels(), "not in the mask: kept")
	})

	t.Run("PolicyDefaultsThenChanges", func(t *testing.T) {
		t.Parallel()
		b := setup(t) // its own tenant policy
		p, err := b.client.GetContactPolicy(b.as(t, "marketer"), &customerv1.GetContactPolicyRequest{})
		require.NoError(t, err)
		require.Equal(t, int64(0), p.GetVersion())
		require.Equal(t, "UTC", p.GetDefaultTimeZone())
		day := 24 * time.Hour
		for _, c := range []struct {
			cap    *customerv1.FrequencyCap
			max    int32
			period time.Duration
		}{{p.GetCareCap(), 4, 30 * day}, {p.GetMarketingCap(), 2, 7 * day}, {p.GetSurveyCap(), 1, 14 * day}, {p.GetGlobalCap(), 6, 7 * day}} {
			require.Equal(t, c.max, c.cap.GetMaxContacts())
			require.Equal(t, c.period, c.cap.GetPeriod().AsDuration())
		}

		updated, err := b.client.UpdateContactPolicy(b.admin(t), &customerv1.UpdateContactPolicyRequest{
			ContactPolicy: &customerv1.ContactPolicy{DefaultTimeZone: "Europe/Paris",
				MarketingCap: &customerv1.FrequencyCap{MaxContacts: 0}, // off, period kept
				GlobalCap:    &customerv1.FrequencyCap{MaxContacts: 10, Period: durationpb.New(30 * day)}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"default_time_zone", "marketing_cap", "global_cap"}},
			RequestId:  uuid.NewString(),
		})
		require.NoError(t, err)
		require.Equal(t, int64(1), updated.GetVersion())
		require.Equal(t, "Europe/Paris", updated.GetDefaultTimeZone())
		require.Equal(t, int32(0), updated.GetMarketingCap().GetMaxContacts())
		require.Equal(t, 7*day, updated.GetMarketingCap().GetPeriod().AsDuration())
		require.Equal(t, int32(10), updated.GetGlobalCap().GetMaxContacts())
		require.Equal(t, int32(4), updated.GetCareCap().GetMaxContacts(), "not in the mask: kept")

		// As grpc-gateway derives it from {"careCap": {"maxContacts": 3}}:
		// the cap's period, not sent, is kept.
		derived, err := b.client.UpdateContactPolicy(b.admin(t), &customerv1.UpdateContactPolicyRequest{
			ContactPolicy: &customerv1.ContactPolicy{CareCap: &customerv1.FrequencyCap{MaxContacts: 3}},
			UpdateMask:    &fieldmaskpb.FieldMask{Paths: []string{"care_cap.max_contacts"}},
		})
		require.NoError(t, err)
		require.Equal(t, int64(2), derived.GetVersion())
		require.Equal(t, int32(3), derived.GetCareCap().GetMaxContacts())
		require.Equal(t, 30*day, derived.GetCareCap().GetPeriod().AsDuration())
		updated = derived
		read, err := b.client.GetContactPolicy(b.as(t, "service"), &customerv1.GetContactPolicyRequest{})
		require.NoError(t, err)
		require.True(t, proto.Equal(updated, read))
	})
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
