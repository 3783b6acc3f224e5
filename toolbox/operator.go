package toolbox

import (
	"bytes"
	"io"
	"net/http"
	"strconv"

	_ "github.com/emersion/go-message/charset"
	gomail "github.com/emersion/go-message/mail"
	"github.com/go-chi/chi/v5"
)

// ConsumerStore is what the operators' consumer pages read and change.
type ConsumerStore interface{}

func (d Deps) operatorRoutes(r chi.Router) {
	r.Get("/outbox/{id}", d.outboxMessage)
}

func (d Deps) outboxMessage(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		d.notFound(w, r)
		return
	}
	m, err := d.Store.OutboxMessageByID(r.Context(), id)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	d.render(w, r, outboxPage(d.page(w, r, "Message "+strconv.FormatInt(id, 10), "outbox"), m, readCaptured(m.Data)))
}

// captured is an outbox message decoded for reading: its header fields and its body, with
// the transfer encoding undone.
type captured struct {
	Header [][2]string
	Body   string
	IsHTML bool
	Err    string
}

// readCaptured decodes a captured message; one that does not parse is shown raw with why.
func readCaptured(data []byte) captured {
	var c captured
	r, err := gomail.CreateReader(bytes.NewReader(data))
	if err != nil {
		c.Err, c.Body = err.Error(), string(data)
		return c
	}
	for f := r.Header.Fields(); f.Next(); {
		v, err := f.Text()
		if err != nil {
			v = f.Value()
		}
		c.Header = append(c.Header, [2]string{f.Key(), v})
	}
	part, err := r.NextPart()
	if err != nil {
		c.Err = err.Error()
		return c
	}
	body, err := io.ReadAll(part.Body)
	if err != nil {
		c.Err = err.Error()
	}
	c.Body = string(body)
	if h, ok := part.Header.(*gomail.InlineHeader); ok {
		ct, _, _ := h.ContentType()
		c.IsHTML = ct == "text/html"
	}
	return c
}
