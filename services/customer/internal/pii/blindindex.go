package pii

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/proto"
)

// BlindIndexBits is how many bits of the keyed PRF a blind index keeps.
//
// RELIABILITY.md §1.7 asks that 2 ≤ C < √R, where R is the number of rows
// indexed together and C = R / 2^bits the expected number of other rows that
// share any one index value (CipherSweet's coincidence count). Index keys are
// per tenant, so R is the number of a tenant's customers with a value in the
// column. The rule holds exactly when 2^(bits+1) ≤ R < 2^(2·bits); for 16
// bits that is
//
//	131,072 ≤ R < 4,294,967,296 customers per tenant.
//
// The design point is a tenant of 10^6 customers: C ≈ 15 (√R = 1,000), so a
// lookup decrypts and compares about 15 candidates; at 10^7, C ≈ 153
// (√R ≈ 3,162), a few milliseconds of work. Fewer bits would put more
// tenants inside the rule but make big tenants' lookups slow (12 bits: 2,441
// candidates at 10^7); more bits the reverse.
//
// Below 131,072 customers C < 2: most index values then belong to one row.
// A database reader learns which of the tenant's rows share a value (what a
// blind index exists to test) but, without the tenant's PRF key, which only
// the master key unwraps, cannot test a guessed value against it.
// Correctness never depends on the length: every candidate is decrypted and
// compared, so a collision costs time, never a wrong answer.
const BlindIndexBits = 16

// Coincidences is C for R rows under an index of bits bits.
func Coincidences(rows float64, bits int) float64 { return rows / math.Exp2(float64(bits)) }

// SafeRows is the range of R, [min, max), in which an index of bits bits
// keeps 2 ≤ C < √R.
func SafeRows(bits int) (minRows, maxRows float64) {
	return math.Exp2(float64(bits + 1)), math.Exp2(float64(2 * bits))
}

// Normalise is the form a column's values are indexed and compared in:
// emails trimmed and lower-cased, phones reduced to '+' and their E.164
// digits, anything else as is.
func Normalise(col Column, v string) string {
	switch col {
	case Email:
		return strings.ToLower(strings.TrimSpace(v))
	case Phone:
		var b strings.Builder
		b.WriteByte('+')
		for _, r := range v {
			if r >= '0' && r <= '9' {
				b.WriteRune(r)
			}
		}
		return b.String()
	}
	return v
}

// BlindIndex is the tenant's blind index of value in col: the first bits of
// HMAC-SHA256 over the column and the normalised value, as a non-negative
// integer. Equal normalised values always index equal; different ones
// collide with probability 2^-bits.
func (t *TenantKeys) BlindIndex(col Column, value string) (int32, error) {
	in := encodeAD("blind_index", []byte(col.Table), []byte(col.Name), []byte(Normalise(col, value)))
	out, err := t.prf.ComputePrimaryPRF(in, 4)
	if err != nil {
		return 0, fmt.Errorf("blind index %s: %w", col, err)
	}
	return int32(binary.BigEndian.Uint32(out) >> (32 - t.s.bits)), nil //nolint:gosec // bits ≤ 31, so it fits
}

// Fingerprint is a keyed digest of data under the tenant's PRF, separated by
// purpose. Idempotency records store it instead of a plain hash of a
// request, which would let anyone holding the table confirm a guessed email.
func (t *TenantKeys) Fingerprint(purpose string, data []byte) ([]byte, error) {
	out, err := t.prf.ComputePrimaryPRF(encodeAD("fingerprint", []byte(purpose), data), 32)
	if err != nil {
		return nil, fmt.Errorf("fingerprint: %w", err)
	}
	return out, nil
}

// RequestFingerprint is the Fingerprint, for purpose, of an API request
// without its request_id field: what an idempotency record stores instead of
// the request. Equal requests still match and different ones still differ,
// which is all an idempotency check compares.
func (t *TenantKeys) RequestFingerprint(purpose string, req proto.Message) ([]byte, error) {
	m := proto.Clone(req)
	if fd := m.ProtoReflect().Descriptor().Fields().ByName("request_id"); fd != nil {
		m.ProtoReflect().Clear(fd)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("request fingerprint: %w", err)
	}
	fp, err := t.Fingerprint(purpose, b)
	if err != nil {
		return nil, fmt.Errorf("request fingerprint: %w", err)
	}
	return fp, nil
}
