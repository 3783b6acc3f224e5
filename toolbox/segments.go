package toolbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// segmentRow is a saved segment as the segments page and the editor show it.
type segmentRow struct {
	Seg    postoffice.Segment
	Issuer string // slug
	// Count is how many consumers it matches now; Problem says why it could not be counted.
	Count   int
	Problem string
}

// segmentsOf lists the segments of the issuers the user may see; counted also counts each.
func (d campaignPages) segmentsOf(ctx context.Context, counted bool) ([]segmentRow, error) {
	u := userFrom(ctx)
	issuers, err := d.campaigns.Issuers(ctx)
	if err != nil {
		return nil, err
	}
	var out []segmentRow
	for _, iss := range issuers {
		if !u.MaySee(iss.ID) {
			continue
		}
		segs, err := d.campaigns.Segments(ctx, iss.ID)
		if err != nil {
			return nil, err
		}
		for _, seg := range segs {
			row := segmentRow{Seg: seg, Issuer: iss.Slug}
			if counted {
				row.Count, row.Problem = d.countSegment(ctx, seg, iss.Slug)
			}
			out = append(out, row)
		}
	}
	return out, nil
}

// countSegment counts the consumers seg matches now, or says why it cannot.
func (d campaignPages) countSegment(ctx context.Context, seg postoffice.Segment, issuer string) (int, string) {
	sel, err := postoffice.ParseSelection([]byte(seg.Selection))
	if err != nil {
		return 0, err.Error()
	}
	c, err := sel.Check(issuer)
	if err != nil {
		return 0, err.Error()
	}
	where, args, err := d.campaigns.CompileSelection(c)
	if err != nil {
		return 0, err.Error()
	}
	n, err := d.campaigns.CheckSelection(postoffice.WithSelectionOwner(ctx, issuer), where, args, sel.IsRaw())
	if err != nil {
		return 0, "could not be counted: " + rewards.ErrorMessage(err)
	}
	return n, ""
}

func (d campaignPages) segmentList(w http.ResponseWriter, r *http.Request) {
	rows, err := d.segmentsOf(r.Context(), true)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	d.render(w, r, segmentListPage(d.page(w, r, "Saved segments", "segments"), rows, userFrom(r.Context()).Operator()))
}

// segmentFor returns the segment the URL's {id} names if the user may see it; otherwise it
// answers 404 (another issuer's or none) and returns nil.
func (d campaignPages) segmentFor(w http.ResponseWriter, r *http.Request) *postoffice.Segment {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		d.notFound(w, r)
		return nil
	}
	seg, err := d.campaigns.Segment(r.Context(), id)
	if err != nil || !userFrom(r.Context()).MaySee(seg.IssuerID) {
		if err != nil && rewards.ErrorCode(err) != rewards.ENOTFOUND {
			d.fail(w, r, err)
			return nil
		}
		d.notFound(w, r)
		return nil
	}
	return seg
}

func (d campaignPages) deleteSegment(w http.ResponseWriter, r *http.Request) {
	seg := d.segmentFor(w, r)
	if seg == nil {
		return
	}
	if err := d.campaigns.DeleteSegment(r.Context(), seg.IssuerID, seg.ID); err != nil {
		d.fail(w, r, err)
		return
	}
	d.redirect(w, r, "/segments", fmt.Sprintf("Segment %q deleted; campaigns made from it keep their selection.", seg.Name))
}

// useSegment puts the chosen segment's selection into the form. Errors go into f.Errors.
func (d campaignPages) useSegment(ctx context.Context, f *campaignForm, idText string) {
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		f.setErr("segment", "choose a saved segment")
		return
	}
	iss, issOK := d.issuerOf(ctx, f)
	seg, err := d.campaigns.Segment(ctx, id)
	if err != nil || !issOK || seg.IssuerID != iss.ID {
		// Another issuer's segment is answered as one that does not exist.
		f.setErr("segment", "there is no such segment of this campaign's issuer")
		return
	}
	f.Join, f.Rows, f.SelJSON = selectionRows(seg.Selection)
	f.Notice = fmt.Sprintf("The selection of segment %q is in the rows below.", seg.Name)
}

// saveSegment saves the form's selection as a segment of its issuer. Errors go into f.Errors.
func (d campaignPages) saveSegment(ctx context.Context, f *campaignForm, name string) {
	f.SegmentName = name
	var fe *postoffice.FieldError
	if err := postoffice.CheckSegmentName(name); errors.As(err, &fe) {
		f.setErr(fe.Field, fe.Reason)
		return
	}
	iss, ok := d.issuerOf(ctx, f)
	if !ok {
		f.setErr("issuer", "choose the issuer the segment is for")
		return
	}
	operator := userFrom(ctx).Operator()
	data, ok := f.selection(operator)
	if !ok {
		return
	}
	if data == nil {
		data = json.RawMessage(`{}`)
	}
	sel, err := postoffice.ParseSelection(data)
	if err == nil {
		_, err = sel.Check(iss.Slug)
	}
	if err != nil {
		field, reason := "selection", err.Error()
		var se *postoffice.SelectionError
		if errors.As(err, &se) {
			field, reason = f.formField(se.Path), se.Reason
		}
		f.setErr(field, reason)
		return
	}
	seg := &postoffice.Segment{IssuerID: iss.ID, Name: name, Selection: string(data)}
	switch err := d.campaigns.CreateSegment(ctx, seg); {
	case errors.Is(err, rewards.ErrExists):
		f.setErr("segment_name", fmt.Sprintf("%s has a segment named %q already: choose another name", iss.Name, name))
	case err != nil:
		f.setErr("segment_name", rewards.ErrorMessage(err))
	default:
		f.Notice = fmt.Sprintf("The selection is saved as segment %q: later campaigns can use it.", name)
		f.SegmentName = ""
	}
}
