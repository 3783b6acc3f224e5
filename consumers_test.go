package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pointpost/rewards"
)

func TestImportReportsBadRows(t *testing.T) {
	e := newEnv(t, "")
	path := filepath.Join(t.TempDir(), "c.csv")
	os.WriteFile(path, []byte("email,first_name,birth_year,format,shoe\nok@example.com,Ann,1980,html,42\nnot-an-address,Bob,1970,text,1\nlate@example.com,Cy,3000,text,2\nfine@example.com,Di,,text,3\n"), 0o600)
	out := runOK(t, e, "import", "consumers", path)
	for _, want := range []string{"line 3", "line 4", "2 new", "2 bad"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	st := openStore(t, e)
	c, err := st.ConsumerByEmail(context.Background(), "ok@example.com")
	if err != nil || c.Attributes["shoe"] != "42" || c.Format != "html" {
		t.Errorf("imported consumer %+v, %v", c, err)
	}
	if _, err := st.ConsumerByEmail(context.Background(), "not-an-address"); !errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("bad row was stored: %v", err)
	}
}
