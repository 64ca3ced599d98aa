package care

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/services/customer/internal/care/store"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit"
)

func (a *careAPI) CreateCarePlan(ctx context.Context, req *customerv1.CreateCarePlanRequest) (*customerv1.CarePlan, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	customerID, err := parseID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	now := a.s.now().UTC()
	in := req.GetCarePlan()
	if strings.TrimSpace(in.GetTitle()) == "" {
		return nil, toStatus(&fieldError{field: "care_plan.title", reason: "must not be blank"})
	}
	for i, t := range in.GetTasks() {
		if strings.TrimSpace(t.GetTitle()) == "" {
			return nil, toStatus(&fieldError{field: fmt.Sprintf("care_plan.tasks[%d].title", i), reason: "must not be blank"})
		}
	}
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.CareService_CreateCarePlan_FullMethodName, RequestID: req.GetRequestId()}
	return sealedIdempotent(ctx, a.s, tenant, key, req, audit.Create, planFields, func(ctx context.Context, tx pgx.Tx) (*customerv1.CarePlan, uuid.UUID, error) {
		ok, mergedInto, err := a.s.store.CustomerForWrite(ctx, tx, tenant, customerID)
		if err != nil {
			return nil, uuid.Nil, err
		}
		if !ok {
			return nil, uuid.Nil, toStatus(errCustomerNotFound)
		}
		if mergedInto != uuid.Nil {
			// Merged: nothing new happens to them; the error names the
			// customer to plan for. Their plans moved with the merge.
			return nil, uuid.Nil, lifecycle.MergedError(customerID, mergedInto)
		}
		k, err := a.s.sealer.CustomerKey(ctx, tx, tenant, customerID)
		if errors.Is(err, pii.ErrKeyDestroyed) {
			// Erased: nothing new may be written about them.
			return nil, uuid.Nil, toStatus(errCustomerNotFound)
		}
		if err != nil {
			return nil, uuid.Nil, err
		}
		p, err := newPlan(k, tenant, customerID, subject, in, now)
		if err != nil {
			return nil, uuid.Nil, err
		}
		if err := a.s.store.InsertPlan(ctx, tx, p); err != nil {
			return nil, uuid.Nil, err
		}
		return planToProto(p, k), customerID, nil
	})
}

// newPlan builds a plan with its texts sealed for the customer.
func newPlan(k *pii.CustomerKey, tenant, customerID uuid.UUID, by string, in *customerv1.CarePlan, now time.Time) (store.Plan, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return store.Plan{}, fmt.Errorf("new care plan id: %w", err)
	}
	title, err := k.Seal(colPlanTitle, []byte(in.GetTitle()))
	if err != nil {
		return store.Plan{}, err
	}
	p := store.Plan{TenantID: tenant, ID: id, CustomerID: customerID, TitleSealed: title, CreatedBy: by, CreateTime: now}
	for i, t := range in.GetTasks() {
		tid, err := uuid.NewV7()
		if err != nil {
			return store.Plan{}, fmt.Errorf("new care task id: %w", err)
		}
		tt, err := k.Seal(colTaskTitle, []byte(t.GetTitle()))
		if err != nil {
			return store.Plan{}, err
		}
		p.Tasks = append(p.Tasks, store.Task{
			ID: tid, PlanID: id, CustomerID: customerID, Position: int32(i + 1), //nolint:gosec // at most 50
			TitleSealed: tt, Assignee: t.GetAssignee(), DueTime: t.GetDueTime().AsTime().UTC(), Status: store.StatusOpen,
		})
	}
	return p, nil
}

func (a *careAPI) GetCarePlan(ctx context.Context, req *customerv1.GetCarePlanRequest) (*customerv1.CarePlan, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	customerID, err := parseID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	p, err := a.s.store.Plan(ctx, a.s.pool, tenant, customerID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, toStatus(errPlanNotFound)
	}
	if err != nil {
		return nil, err
	}
	keys, err := a.s.keys(ctx, tenant, []uuid.UUID{customerID})
	if err != nil {
		return nil, err
	}
	out := planToProto(p, keys[customerID])
	if err := a.s.auditRead(ctx, audit.Read, []uuid.UUID{customerID}, planFields(out)); err != nil {
		return nil, err
	}
	return out, nil
}

func (a *careAPI) ListCarePlans(ctx context.Context, req *customerv1.ListCarePlansRequest) (*customerv1.ListCarePlansResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	customerID, err := parseID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	size := grpcx.PageSize(req.GetPageSize())
	filter := "care-plans:" + customerID.String()
	before, err := decodePageToken(req.GetPageToken(), filter)
	if err != nil {
		return nil, err
	}
	ok, err := a.s.store.CustomerExists(ctx, a.s.pool, tenant, customerID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, toStatus(errCustomerNotFound)
	}
	rows, err := a.s.store.Plans(ctx, a.s.pool, tenant, customerID, before, size+1)
	if err != nil {
		return nil, err
	}
	resp := &customerv1.ListCarePlansResponse{}
	if len(rows) > size {
		rows = rows[:size]
		last := rows[len(rows)-1]
		resp.NextPageToken = encodePageToken(filter, store.Cursor{Time: last.CreateTime, ID: last.ID})
	}
	keys, err := a.s.keys(ctx, tenant, []uuid.UUID{customerID})
	if err != nil {
		return nil, err
	}
	for _, p := range rows {
		resp.CarePlans = append(resp.CarePlans, planToProto(p, keys[customerID]))
	}
	if err := a.s.auditRead(ctx, audit.List, []uuid.UUID{customerID}, planFields(resp.CarePlans...)); err != nil {
		return nil, err
	}
	return resp, nil
}

func (a *careAPI) CompleteCareTask(ctx context.Context, req *customerv1.CompleteCareTaskRequest) (*customerv1.CareTask, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	now := a.s.now().UTC()
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.CareService_CompleteCareTask_FullMethodName, RequestID: req.GetRequestId()}
	return sealedIdempotent(ctx, a.s, tenant, key, req, audit.Update, taskFields, func(ctx context.Context, tx pgx.Tx) (*customerv1.CareTask, uuid.UUID, error) {
		t, err := a.s.store.LockTask(ctx, tx, tenant, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, uuid.Nil, toStatus(errTaskNotFound)
		}
		if err != nil {
			return nil, uuid.Nil, err
		}
		if t.Status == store.StatusDone {
			return nil, uuid.Nil, toStatus(errTaskDone)
		}
		k, err := a.s.sealer.CustomerKey(ctx, tx, tenant, t.CustomerID)
		if errors.Is(err, pii.ErrKeyDestroyed) {
			return nil, uuid.Nil, toStatus(errTaskNotFound)
		}
		if err != nil {
			return nil, uuid.Nil, err
		}
		var note []byte
		if n := req.GetOutcomeNote(); n != "" {
			if note, err = k.Seal(colOutcomeNote, []byte(n)); err != nil {
				return nil, uuid.Nil, err
			}
		}
		done, err := a.s.store.CompleteTask(ctx, tx, tenant, id, subject, now, note)
		if err != nil {
			return nil, uuid.Nil, err
		}
		return taskToProto(done, k), t.CustomerID, nil
	})
}

func (a *careAPI) ListCareTasks(ctx context.Context, req *customerv1.ListCareTasksRequest) (*customerv1.ListCareTasksResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	f := store.TaskFilter{Assignee: req.GetAssignee()}
	switch req.GetStatus() {
	case customerv1.CareTaskStatus_CARE_TASK_STATUS_UNSPECIFIED:
	case customerv1.CareTaskStatus_CARE_TASK_STATUS_OPEN:
		f.Status = store.StatusOpen
	case customerv1.CareTaskStatus_CARE_TASK_STATUS_DONE:
		f.Status = store.StatusDone
	default:
		return nil, toStatus(&fieldError{field: "status", reason: "must be a task status"})
	}
	if db := req.GetDueBefore(); db != nil {
		if err := db.CheckValid(); err != nil {
			return nil, toStatus(&fieldError{field: "due_before", reason: "must be a valid time"})
		}
		f.DueBefore = db.AsTime().UTC()
	}
	size := grpcx.PageSize(req.GetPageSize())
	filter := fmt.Sprintf("care-tasks:%s:%s:%d", f.Assignee, f.Status, f.DueBefore.UnixMicro())
	after, err := decodePageToken(req.GetPageToken(), filter)
	if err != nil {
		return nil, err
	}
	rows, err := a.s.store.Tasks(ctx, a.s.pool, tenant, f, after, size+1)
	if err != nil {
		return nil, err
	}
	resp := &customerv1.ListCareTasksResponse{}
	if len(rows) > size {
		rows = rows[:size]
		last := rows[len(rows)-1]
		resp.NextPageToken = encodePageToken(filter, store.Cursor{Time: last.DueTime, ID: last.ID})
	}
	ids := make([]uuid.UUID, 0, len(rows))
	for _, t := range rows {
		ids = append(ids, t.CustomerID)
	}
	keys, err := a.s.keys(ctx, tenant, ids)
	if err != nil {
		return nil, err
	}
	read := []uuid.UUID{} // the customers whose texts the page shows
	for _, t := range rows {
		out := taskToProto(t, keys[t.CustomerID])
		resp.CareTasks = append(resp.CareTasks, out)
		if len(taskFields(out)) > 0 && !slices.Contains(read, t.CustomerID) {
			read = append(read, t.CustomerID)
		}
	}
	if err := a.s.auditRead(ctx, audit.List, read, taskFields(resp.CareTasks...)); err != nil {
		return nil, err
	}
	return resp, nil
}

// auditRead records, on the pool and before they are returned, that the
// customers' care texts named by fields were read. A read that returned no
// text (an empty page, erased customers) writes no row. A read that cannot
// be audited fails.
func (s *Server) auditRead(ctx context.Context, action audit.Action, customers []uuid.UUID, fields []string) error {
	if len(fields) == 0 {
		return nil
	}
	return audit.Record(ctx, s.pool, audit.Entry{Action: action, CustomerIDs: customers, Fields: fields})
}

// The personal fields of plans and tasks, as audit rows name them.
const (
	fieldPlanTitle       = "care_plan.title"
	fieldPlanTaskTitle   = "care_plan.tasks.title"
	fieldPlanTaskNote    = "care_plan.tasks.outcome_note"
	fieldTaskTitle       = "care_task.title"
	fieldTaskOutcomeNote = "care_task.outcome_note"
)

// planFields names the personal fields set in any of ps, never a value.
func planFields(ps ...*customerv1.CarePlan) []string {
	var title bool
	var tasks []*customerv1.CareTask
	for _, p := range ps {
		title = title || p.GetTitle() != ""
		tasks = append(tasks, p.GetTasks()...)
	}
	out := []string{}
	if title {
		out = append(out, fieldPlanTitle)
	}
	for _, f := range taskFields(tasks...) {
		out = append(out, map[string]string{fieldTaskTitle: fieldPlanTaskTitle, fieldTaskOutcomeNote: fieldPlanTaskNote}[f])
	}
	return out
}

// taskFields names the personal fields set in any of ts, never a value.
func taskFields(ts ...*customerv1.CareTask) []string {
	var title, note bool
	for _, t := range ts {
		title = title || t.GetTitle() != ""
		note = note || t.GetOutcomeNote() != ""
	}
	out := []string{}
	if title {
		out = append(out, fieldTaskTitle)
	}
	if note {
		out = append(out, fieldTaskOutcomeNote)
	}
	return out
}

// keys returns the data keys of customers, in one query; an erased
// customer has none (their texts read as empty).
func (s *Server) keys(ctx context.Context, tenant uuid.UUID, customers []uuid.UUID) (map[uuid.UUID]*pii.CustomerKey, error) {
	keys, err := s.sealer.CustomerKeys(ctx, s.pool, tenant, customers)
	if errors.Is(err, pii.ErrNoTenantKeys) {
		return map[uuid.UUID]*pii.CustomerKey{}, nil
	}
	return keys, err
}

// open opens a sealed text; without the key (erased) or a value it is "".
func open(k *pii.CustomerKey, col pii.Column, sealed []byte) string {
	if k == nil || len(sealed) == 0 {
		return ""
	}
	b, err := k.Open(col, sealed)
	if err != nil {
		return ""
	}
	return string(b)
}

func planToProto(p store.Plan, k *pii.CustomerKey) *customerv1.CarePlan {
	out := &customerv1.CarePlan{
		Id: p.ID.String(), CustomerId: p.CustomerID.String(), Title: open(k, colPlanTitle, p.TitleSealed),
		CreatedBy: p.CreatedBy, CreateTime: timestamppb.New(p.CreateTime),
	}
	for _, t := range p.Tasks {
		out.Tasks = append(out.Tasks, taskToProto(t, k))
	}
	return out
}

func taskToProto(t store.Task, k *pii.CustomerKey) *customerv1.CareTask {
	out := &customerv1.CareTask{
		Id: t.ID.String(), PlanId: t.PlanID.String(), CustomerId: t.CustomerID.String(),
		Title: open(k, colTaskTitle, t.TitleSealed), Assignee: t.Assignee, DueTime: timestamppb.New(t.DueTime),
		Status: customerv1.CareTaskStatus_CARE_TASK_STATUS_OPEN, CompletedBy: t.CompletedBy,
		OutcomeNote: open(k, colOutcomeNote, t.OutcomeNoteSealed),
	}
	if t.Status == store.StatusDone {
		out.Status = customerv1.CareTaskStatus_CARE_TASK_STATUS_DONE
		out.CompleteTime = timestamppb.New(t.CompleteTime)
	}
	return out
}

// sealedIdempotent is idem.Do for requests and responses holding personal
// text: what idem stores is a keyed fingerprint of req (not its hash, which
// could be checked against guesses) and the response sealed for the
// customer it is about (so erasing them shreds it). fn returns the response
// and that customer.
//
// It audits the call once: the change as action, in fn's transaction; a
// retry, which returns the stored response, as a read. fields names the
// personal fields of a response.
func sealedIdempotent[R proto.Message](ctx context.Context, s *Server, tenant uuid.UUID, key idem.Key, req proto.Message,
	action audit.Action, fields func(...R) []string, fn func(ctx context.Context, tx pgx.Tx) (R, uuid.UUID, error),
) (R, error) {
	var zero R
	// The tenant's keys, created on first use outside the transaction (see
	// pii.Sealer.Tenant).
	keys, err := s.sealer.Tenant(ctx, s.pool, tenant)
	if err != nil {
		return zero, err
	}
	var fingerprint proto.Message = &wrapperspb.BytesValue{}
	if key.RequestID != "" {
		m := proto.Clone(req)
		if fd := m.ProtoReflect().Descriptor().Fields().ByName("request_id"); fd != nil {
			m.ProtoReflect().Clear(fd)
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			return zero, fmt.Errorf("request fingerprint: %w", err)
		}
		fp, err := keys.Fingerprint("care-idempotent-request", b)
		if err != nil {
			return zero, fmt.Errorf("request fingerprint: %w", err)
		}
		fingerprint = wrapperspb.Bytes(fp)
	}
	var (
		fresh   R
		isFresh bool
	)
	stored, err := idem.Do(ctx, s.pool, key, fingerprint, func(ctx context.Context, tx pgx.Tx) (*wrapperspb.BytesValue, error) {
		resp, customerID, err := fn(ctx, tx)
		if err != nil {
			return nil, err
		}
		fresh, isFresh = resp, true
		if err := audit.Record(ctx, tx, audit.Entry{Action: action, CustomerIDs: []uuid.UUID{customerID},
			Fields: fields(resp), IdempotencyKey: key.RequestID}); err != nil {
			return nil, err
		}
		if key.RequestID == "" {
			return &wrapperspb.BytesValue{}, nil // nothing is stored
		}
		b, err := proto.Marshal(resp)
		if err != nil {
			return nil, fmt.Errorf("seal response: %w", err)
		}
		ct, err := s.sealer.Seal(ctx, tx, tenant, customerID, pii.StoredResponse, b)
		if err != nil {
			return nil, fmt.Errorf("seal response: %w", err)
		}
		return wrapperspb.Bytes(append(customerID[:], ct...)), nil
	})
	if err != nil {
		return zero, err
	}
	if isFresh {
		return fresh, nil
	}
	v := stored.GetValue()
	if len(v) < len(uuid.UUID{}) {
		return zero, errors.New("stored response is not sealed")
	}
	customerID, _ := uuid.FromBytes(v[:len(uuid.UUID{})])
	b, err := s.sealer.Open(ctx, s.pool, tenant, customerID, pii.StoredResponse, v[len(uuid.UUID{}):])
	if errors.Is(err, pii.ErrKeyDestroyed) {
		return zero, grpcx.NotFound("customer")
	}
	if err != nil {
		return zero, fmt.Errorf("open stored response: %w", err)
	}
	out := zero.ProtoReflect().New().Interface().(R)
	if err := proto.Unmarshal(b, out); err != nil {
		return zero, fmt.Errorf("decode stored response: %w", err)
	}
	if err := s.auditRead(ctx, audit.Read, []uuid.UUID{customerID}, fields(out)); err != nil {
		return zero, err
	}
	return out, nil
}
