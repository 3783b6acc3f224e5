package toolbox_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"pointpost/postoffice"
	"pointpost/web/pagetest"
)

func TestSegmentSavedListedWithItsCountAndReused(t *testing.T) {
	e := newEditorEnv(t)
	e.consumers()
	c, _ := e.signIn("ann@acme.example", "acme")
	form := campaignForm()
	form.Set("action", "save_segment")
	form.Set("segment_name", "US regulars")
	resp, body := c.post("/campaigns/new", form)
	doc := parseHTML(t, body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(oneText(t, doc, "segment-notice"), `"US regulars"`) {
		t.Fatalf("save segment: %d\n%.600s", resp.StatusCode, body)
	}
	if jobs, _ := e.st.Jobs(context.Background()); len(jobs) != 0 {
		t.Fatal("saving a segment saved the campaign")
	}
	// Listed with its live count: 3 active US consumers.
	list := c.page("/segments", http.StatusOK)
	if got := oneText(t, list, "segment-count"); got != "3" {
		t.Errorf("the segment's live count is %q, want 3", got)
	}
	// The navigation leads to the page and marks it as the one open.
	current := ""
	for a := range pagetest.ByTestID(list, "nav")[0].Descendants() {
		if a.Type == html.ElementNode && a.Data == "a" && pagetest.Attr(a, "aria-current") == "page" {
			current = pagetest.Attr(a, "href")
		}
	}
	if current != "/segments" {
		t.Errorf("the navigation marks %q as open on the segments page, want /segments", current)
	}
	segs, _ := e.st.Segments(context.Background(), e.issuer("acme").ID)
	if len(segs) != 1 {
		t.Fatalf("%d segments stored", len(segs))
	}
	// A later campaign starts from it: its rows come back.
	later := campaignForm()
	later.Del("sel_field_0")
	later.Del("sel_value_0")
	later.Set("action", "use_segment")
	later.Set("segment", fmt.Sprint(segs[0].ID))
	resp, body = c.post("/campaigns/new", later)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `value="US"`) || !strings.Contains(body, `value="country"`) {
		t.Fatalf("use segment: %d\n%.600s", resp.StatusCode, body)
	}
	// Deleted, it is gone from the list.
	if resp, _ := c.post(fmt.Sprintf("/segments/%d/delete", segs[0].ID), nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if len(byTestID(c.page("/segments", http.StatusOK), "no-segments")) != 1 {
		t.Fatal("the deleted segment is still listed")
	}
}

func TestSegmentBadNamesAndAnotherIssuersSegment(t *testing.T) {
	e := newEditorEnv(t)
	c, _ := e.signIn("ann@acme.example", "acme")
	bolt := e.issuer("bolt")
	theirs := &postoffice.Segment{IssuerID: bolt.ID, Name: "Bolt's best", Selection: `{}`}
	if err := e.st.CreateSegment(context.Background(), theirs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, segName, want string }{
		{"empty", "  ", "give the segment a name"},
		{"two lines", "a\nb", ""},
		{"too long", strings.Repeat("x", 500), "at most"},
	} {
		form := campaignForm()
		form.Set("action", "save_segment")
		form.Set("segment_name", tc.segName)
		resp, body := c.post("/campaigns/new", form)
		doc := parseHTML(t, body)
		if resp.StatusCode != http.StatusUnprocessableEntity || len(byTestID(doc, "error-segment_name")) != 1 ||
			!strings.Contains(oneText(t, doc, "error-segment_name"), tc.want) {
			t.Errorf("%s name: %d", tc.name, resp.StatusCode)
		}
	}
	form := campaignForm()
	form.Set("action", "save_segment")
	form.Set("segment_name", "Mine")
	c.post("/campaigns/new", form)
	if resp, body := c.post("/campaigns/new", form); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "already") {
		t.Errorf("a second segment of the same name: %d", resp.StatusCode)
	}
	// Another issuer's segment id is not used, nor shown, nor deleted.
	use := campaignForm()
	use.Set("action", "use_segment")
	use.Set("segment", fmt.Sprint(theirs.ID))
	resp, body := c.post("/campaigns/new", use)
	if resp.StatusCode != http.StatusUnprocessableEntity || len(byTestID(parseHTML(t, body), "error-segment")) != 1 || strings.Contains(body, "Bolt's best") {
		t.Errorf("using another issuer's segment: %d", resp.StatusCode)
	}
	if strings.Contains(text(c.page("/segments", http.StatusOK)), "Bolt's best") {
		t.Error("another issuer's segment is listed")
	}
	if resp, _ := c.post(fmt.Sprintf("/segments/%d/delete", theirs.ID), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("deleting another issuer's segment: %d, want 404", resp.StatusCode)
	}
	if _, err := e.st.Segment(context.Background(), theirs.ID); err != nil {
		t.Fatalf("another issuer's segment is gone: %v", err)
	}
	segs, _ := e.st.Segments(context.Background(), e.issuer("acme").ID)
	if len(segs) != 1 {
		t.Fatalf("acme has %d segments, want the one named Mine", len(segs))
	}
}
