// Package pagetest reads HTML pages in tests: parse one, find elements by data-testid, and
// read their attributes, text and form values.
package pagetest

import (
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// Parse parses page, failing the test if it is not HTML.
func Parse(t testing.TB, page string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatalf("not HTML: %v", err)
	}
	return doc
}

// ByTestID returns the elements under n with data-testid id, in document order.
func ByTestID(n *html.Node, id string) []*html.Node {
	var out []*html.Node
	for d := range n.Descendants() {
		if d.Type == html.ElementNode && Attr(d, "data-testid") == id {
			out = append(out, d)
		}
	}
	return out
}

// Attr is n's attribute name, "" if it has none.
func Attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

// Text is the text of n with runs of white space made one space. Text nodes join as they
// stand: "66<span>%</span>" reads "66%".
func Text(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// FormOf returns the form element around n, failing the test if there is none.
func FormOf(t testing.TB, n *html.Node) *html.Node {
	t.Helper()
	for p := n; p != nil; p = p.Parent {
		if p.Type == html.ElementNode && p.Data == "form" {
			return p
		}
	}
	t.Fatalf("<%s> is in no form", n.Data)
	return nil
}

// InputValue is the value of the form's input named name.
func InputValue(form *html.Node, name string) string {
	for d := range form.Descendants() {
		if d.Type == html.ElementNode && d.Data == "input" && Attr(d, "name") == name {
			return Attr(d, "value")
		}
	}
	return ""
}
