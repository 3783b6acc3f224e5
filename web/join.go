package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/go-chi/chi/v5"

	"pointpost/postoffice"
	"pointpost/rewards"
)

const (
	// maxFormBytes bounds a form body; the enrollment form is a few hundred bytes.
	maxFormBytes = 64 << 10
	// maxFieldLen bounds each text field, in characters.
	maxFieldLen = 100
	// maxInterests bounds the interests of one sign-up.
	maxInterests = 20
	// Birth years run from earliestBirthYear to minAge years before now: the program is for
	// adults and teenagers, as most mail programs' terms require.
	earliestBirthYear = 1900
	minAge            = 13
)

// interestChoices are the interests the form offers as checkboxes; others can be typed in.
func interestChoices() []string {
	return []string{"books", "coffee", "computing", "cooking", "crafts", "cycling", "fashion", "fishing",
		"fitness", "gaming", "gardening", "golf", "hiking", "movies", "music", "pets", "photography",
		"running", "sailing", "skiing", "tennis", "theatre", "travel", "wine"}
}

// choice is one option of a select.
type choice struct{ Value, Label string }

// genderChoices are the genders the form offers; the empty one is "prefer not to say".
func genderChoices() []choice {
	return []choice{{"", "Prefer not to say"}, {"female", "Female"}, {"male", "Male"}, {"nonbinary", "Non-binary"}}
}

// joinForm is the enrollment form as the consumer filled it in, with an error per field.
type joinForm struct {
	Email, FirstName, LastName    string
	City, Region, Country, Postal string
	BirthYear, Gender, Format     string
	Interests                     []string // the boxes ticked
	OtherInterests                string   // typed, comma separated
	Errors                        map[string]string
	EarliestYear, LatestYear      int
}

// newJoinForm is an empty form; HTML is the format chosen until she picks one.
func newJoinForm(latestYear int) *joinForm {
	return &joinForm{Format: string(rewards.FormatHTML), Errors: map[string]string{},
		EarliestYear: earliestBirthYear, LatestYear: latestYear}
}

// readJoinForm takes the posted fields.
func readJoinForm(v url.Values, latestYear int) *joinForm {
	f := newJoinForm(latestYear)
	f.Email = strings.TrimSpace(v.Get("email"))
	f.FirstName = strings.TrimSpace(v.Get("first_name"))
	f.LastName = strings.TrimSpace(v.Get("last_name"))
	f.City = strings.TrimSpace(v.Get("city"))
	f.Region = strings.TrimSpace(v.Get("region"))
	f.Country = strings.TrimSpace(v.Get("country"))
	f.Postal = strings.TrimSpace(v.Get("postal_code"))
	f.BirthYear = strings.TrimSpace(v.Get("birth_year"))
	f.Gender = strings.TrimSpace(v.Get("gender"))
	f.Format = strings.TrimSpace(v.Get("format"))
	f.Interests = v["interests"]
	f.OtherInterests = strings.TrimSpace(v.Get("other_interests"))
	return f
}

// Checked reports whether the interest's box is ticked.
func (f *joinForm) Checked(interest string) bool { return slices.Contains(f.Interests, interest) }

// consumer validates the form and returns the consumer it describes; ok is false when a
// field is wrong, and f.Errors then says why, by field name.
func (f *joinForm) consumer() (c *rewards.Consumer, ok bool) {
	c = &rewards.Consumer{FirstName: f.FirstName, LastName: f.LastName, City: f.City, Region: f.Region,
		Country: f.Country, PostalCode: f.Postal}
	email, err := rewards.ValidEmail(f.Email)
	switch {
	case f.Email == "":
		f.Errors["email"] = "Please enter your e-mail address."
	case err != nil:
		f.Errors["email"] = "This is not an e-mail address we can write to. Please check it, like name@example.com."
	default:
		c.Email = email
	}
	for _, t := range []struct{ field, value string }{
		{"first_name", f.FirstName}, {"last_name", f.LastName}, {"city", f.City},
		{"region", f.Region}, {"country", f.Country}, {"postal_code", f.Postal},
	} {
		if msg := textProblem(t.value); msg != "" {
			f.Errors[t.field] = msg
		}
	}
	if f.BirthYear != "" {
		y, err := strconv.Atoi(f.BirthYear)
		if err != nil || y < f.EarliestYear || y > f.LatestYear {
			f.Errors["birth_year"] = fmt.Sprintf("Please enter a year between %d and %d, or leave it empty.",
				f.EarliestYear, f.LatestYear)
		}
		c.BirthYear = y
	}
	if !slices.ContainsFunc(genderChoices(), func(ch choice) bool { return ch.Value == f.Gender }) {
		f.Errors["gender"] = "Please choose one of the options."
	}
	c.Gender = f.Gender
	if format, err := rewards.ParseFormat(f.Format); err != nil {
		f.Errors["format"] = "Please choose HTML or plain text."
	} else {
		c.Format = format
	}
	interests := slices.Clone(f.Interests)
	for part := range strings.SplitSeq(f.OtherInterests, ",") {
		interests = append(interests, part)
	}
	c.Interests = rewards.NormalizeInterests(interests)
	switch {
	case len(c.Interests) > maxInterests:
		f.Errors["interests"] = fmt.Sprintf("Please choose at most %d interests.", maxInterests)
	case slices.ContainsFunc(c.Interests, func(s string) bool { return textProblem(s) != "" }):
		f.Errors["interests"] = "Each interest should be a few words, without special characters."
	}
	return c, len(f.Errors) == 0
}

// textProblem says what is wrong with a free-text field, or "" when nothing is.
func textProblem(s string) string {
	if len([]rune(s)) > maxFieldLen {
		return fmt.Sprintf("Please keep this under %d characters.", maxFieldLen)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "Please use letters, digits and punctuation only."
	}
	return ""
}

// maxLength is the longest value an input of the kind takes: RFC 5321's 254 for an
// address, maxFieldLen for the rest.
func maxLength(kind string) int {
	if kind == "email" {
		return 254
	}
	return maxFieldLen
}

// latestBirthYear is the latest birth year the form accepts now.
func (s *server) latestBirthYear() int { return s.Now().Year() - minAge }

// joinForm serves GET /join.
func (s *server) joinForm(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, joinPage(newJoinForm(s.latestBirthYear())))
}

// join serves POST /join: a valid form becomes a pending enrollment and a double opt-in
// e-mail with its confirmation link; an invalid one comes back with its errors beside their
// fields. The answer is the same whether or not the address is known already, so the form
// tells nobody who is a member.
func (s *server) join(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Something is wrong with the form",
			"The form could not be read. Please go back and try again.")
		return
	}
	f := readJoinForm(r.PostForm, s.latestBirthYear())
	c, ok := f.consumer()
	if !ok {
		s.render(w, r, http.StatusUnprocessableEntity, joinPage(f))
		return
	}
	now := s.Now()
	if !s.joinsByClient.allow(s.TrustedProxies.ClientIP(r), now) || !s.joinsByEmail.allow(c.Email, now) {
		w.Header().Set("Retry-After", "3600")
		s.errorPage(w, r, http.StatusTooManyRequests, "Too many sign-ups",
			"We have sent enough confirmation e-mails for now. Please check your inbox, or try again in an hour.")
		return
	}
	if s.BaseURL == "" {
		// Not the request's Host: anyone may send any Host, and the link goes out in our mail.
		s.fail(w, r, errors.New("web: no BaseURL to write confirmation links with"))
		return
	}
	ctx := r.Context()
	id, err := s.Enrollments.CreateEnrollment(ctx, c)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if id <= 0 || id > postoffice.MaxConsumerID {
		s.fail(w, r, fmt.Errorf("enrollment id %d does not fit in a token", id))
		return
	}
	link := strings.TrimRight(s.BaseURL, "/") + "/join/confirm/" + s.PostOffice.Tokens().Encode(EnrollmentJobKey, id)
	if err := s.Confirmations.SendConfirmation(ctx, c.Email, c.FullName(), link); err != nil {
		// The pending enrollment stays; trying again makes another, which is harmless.
		s.fail(w, r, fmt.Errorf("confirmation e-mail for enrollment %d: %w", id, err))
		return
	}
	s.render(w, r, http.StatusOK, checkInboxPage(c.Email))
}

// confirmForm serves GET /join/confirm/{token}, the link of the double opt-in e-mail: a page
// with a Confirm button. Mail scanners fetch links by themselves, so following the link
// alone must not enroll anyone; only the button's POST does.
func (s *server) confirmForm(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.enrollmentID(chi.URLParam(r, "token")); !ok {
		s.invalidLink(w, r)
		return
	}
	s.render(w, r, http.StatusOK, confirmPage(r.URL.Path))
}

// confirm serves POST /join/confirm/{token}: the sign-up becomes a consumer. Confirming
// again shows the same welcome.
func (s *server) confirm(w http.ResponseWriter, r *http.Request) {
	id, ok := s.enrollmentID(chi.URLParam(r, "token"))
	if !ok {
		s.invalidLink(w, r)
		return
	}
	c, err := s.Enrollments.ConfirmEnrollment(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, welcomePage(c, s.PostOffice.AccountToken(c.ID)))
}

// enrollmentID reads a confirmation token: only one made for an enrollment will do.
func (s *server) enrollmentID(token string) (int64, bool) {
	job, id, err := s.PostOffice.Tokens().Decode(token)
	return id, err == nil && job == EnrollmentJobKey
}
