package outreach

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"slices"
	"strings"
	texttemplate "text/template"

	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/outreach/store"
)

// FieldError is a rule on one request field the request schema cannot
// express; Field is the path inside the request, e.g.
// "outreach_template.variants[1].subject".
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// maxRendered bounds one rendered text, so a template cannot make a
// message of unbounded size ({{range 1000000000}}…).
const maxRendered = 512 << 10

// checkTemplate checks what the schema cannot: the channel is one a driver
// kind exists for, locales are unique and include the default, the email
// subject is there (and only for email), HTML only for email, and every
// text parses. field prefixes the field paths (the request's field holding
// the template).
func checkTemplate(t store.Template, field string) error {
	switch {
	case t.Key == "":
		return &FieldError{Field: field + ".key", Reason: "is required"}
	case len(t.Variants) == 0:
		return &FieldError{Field: field + ".variants", Reason: "must hold at least one variant"}
	case t.DefaultLocale == "":
		return &FieldError{Field: field + ".default_locale", Reason: "is required"}
	}
	if !slices.Contains(templatable, consent.Channel(t.Channel)) {
		return &FieldError{Field: field + ".channel", Reason: "must be EMAIL, SMS or MESSAGING"}
	}
	email := t.Channel == string(consent.ChannelEmail)
	seen := map[string]bool{}
	for i, v := range t.Variants {
		at := fmt.Sprintf("%s.variants[%d]", field, i)
		loc := strings.ToLower(v.Locale)
		if seen[loc] {
			return &FieldError{Field: at + ".locale", Reason: fmt.Sprintf("locale %s appears twice", v.Locale)}
		}
		seen[loc] = true
		switch {
		case email && strings.TrimSpace(v.Subject) == "":
			return &FieldError{Field: at + ".subject", Reason: fmt.Sprintf("is required for email (variant %s)", v.Locale)}
		case !email && v.Subject != "":
			return &FieldError{Field: at + ".subject", Reason: fmt.Sprintf("is for email only (variant %s)", v.Locale)}
		case !email && v.HTMLBody != "":
			return &FieldError{Field: at + ".html_body", Reason: fmt.Sprintf("is for email only (variant %s)", v.Locale)}
		case strings.ContainsAny(v.Subject, "\r\n"):
			return &FieldError{Field: at + ".subject", Reason: fmt.Sprintf("must be one line (variant %s)", v.Locale)}
		}
		if _, err := parse(v); err != nil {
			var pe *partError
			if errors.As(err, &pe) {
				return &FieldError{Field: at + "." + pe.part,
					Reason: fmt.Sprintf("does not parse as a template (variant %s): %v", v.Locale, pe.err)}
			}
			return err
		}
	}
	if !seen[strings.ToLower(t.DefaultLocale)] {
		return &FieldError{Field: field + ".default_locale", Reason: "must be the locale of one of the variants"}
	}
	return nil
}

// partError says which part of a variant failed.
type partError struct {
	part string // subject, text_body, html_body
	err  error
}

func (e *partError) Error() string { return e.part + ": " + e.err.Error() }

func (e *partError) Unwrap() error { return e.err }

// parsed is a variant ready to execute.
type parsed struct {
	locale        string
	subject, text *texttemplate.Template
	html          *htmltemplate.Template // nil: no HTML body
}

// parse parses a variant. Executing with a variable the data lacks is an
// error (missingkey=error), never "<no value>" in a customer's inbox.
func parse(v store.Variant) (*parsed, error) {
	p := &parsed{locale: v.Locale}
	var err error
	if p.subject, err = texttemplate.New("subject").Option("missingkey=error").Parse(v.Subject); err != nil {
		return nil, &partError{part: "subject", err: err}
	}
	if p.text, err = texttemplate.New("text_body").Option("missingkey=error").Parse(v.TextBody); err != nil {
		return nil, &partError{part: "text_body", err: err}
	}
	if v.HTMLBody != "" {
		if p.html, err = htmltemplate.New("html_body").Option("missingkey=error").Parse(v.HTMLBody); err != nil {
			return nil, &partError{part: "html_body", err: err}
		}
	}
	return p, nil
}

// Content is a rendered message.
type Content struct {
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text"`
	HTML    string `json:"html,omitempty"`
}

// errTooLarge: a rendered text exceeds maxRendered.
var errTooLarge = errors.New("rendered text is too large")

// limited is a buffer that refuses to grow past maxRendered.
type limited struct{ bytes.Buffer }

func (l *limited) Write(p []byte) (int, error) {
	if l.Len()+len(p) > maxRendered {
		return 0, errTooLarge
	}
	return l.Buffer.Write(p)
}

// render executes the variant with vars.
func (p *parsed) render(vars map[string]string) (Content, error) {
	if vars == nil {
		vars = map[string]string{}
	}
	var c Content
	exec := func(part string, run func(*limited) error, dst *string) error {
		var b limited
		if err := run(&b); err != nil {
			return &partError{part: part, err: err}
		}
		*dst = b.String()
		return nil
	}
	if err := exec("subject", func(b *limited) error { return p.subject.Execute(b, vars) }, &c.Subject); err != nil {
		return Content{}, err
	}
	if strings.ContainsAny(c.Subject, "\r\n") {
		return Content{}, &partError{part: "subject", err: errors.New("a variable put a line break in the subject")}
	}
	if err := exec("text_body", func(b *limited) error { return p.text.Execute(b, vars) }, &c.Text); err != nil {
		return Content{}, err
	}
	if p.html != nil {
		if err := exec("html_body", func(b *limited) error { return p.html.Execute(b, vars) }, &c.HTML); err != nil {
			return Content{}, err
		}
	}
	return c, nil
}

// pickVariant chooses the variant for locale by BCP 47 lookup (RFC 4647
// §3.4): the exact tag, then the tag with its last subtag dropped, and so
// on to the language (zh-Hant-TW, zh-Hant, zh), case-insensitively; then
// the template's default locale.
func pickVariant(t store.Template, locale string) store.Variant {
	find := func(tag string) (store.Variant, bool) {
		for _, v := range t.Variants {
			if strings.EqualFold(v.Locale, tag) {
				return v, true
			}
		}
		return store.Variant{}, false
	}
	for tag := strings.ReplaceAll(locale, "_", "-"); tag != ""; {
		if v, ok := find(tag); ok {
			return v
		}
		i := strings.LastIndexByte(tag, '-')
		if i < 0 {
			break
		}
		tag = tag[:i]
	}
	v, _ := find(t.DefaultLocale) // checkTemplate ensures it exists
	return v
}
