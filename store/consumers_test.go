package store

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// importCSV imports data and returns the result and the reported bad rows.
func importCSV(t *testing.T, s *Store, data string) (ImportResult, []rewards.RowError) {
	t.Helper()
	var bad []rewards.RowError
	res, err := s.ImportConsumersCSV(context.Background(), strings.NewReader(data), func(e rewards.RowError) {
		bad = append(bad, e)
	})
	if err != nil {
		t.Fatalf("ImportConsumersCSV: %v", err)
	}
	return res, bad
}

func consumer(t *testing.T, s *Store, email string) *rewards.Consumer {
	t.Helper()
	c, err := s.ConsumerByEmail(context.Background(), email)
	if err != nil {
		t.Fatalf("ConsumerByEmail(%q): %v", email, err)
	}
	return c
}

func TestImportConsumersBadRows(t *testing.T) {
	s := openTest(t)
	res, bad := importCSV(t, s, strings.Join([]string{
		"email,first_name,last_name,birth_year,format,interests,Plan,Member Since",
		"ann@example.com,Ann,Lee,1980,html,Golf; TENNIS;golf,gold,2019",
		"not an address,Bob,Ray,1980,text,,,",
		"cy@example.com,Cy,Young,1850,text,,,",
		"dee@example.com,Dee,Dunn,,pdf,,,",
		"eve@example.com,Eve,Evans",
		"Fay@Example.com,Fay,Fox,,,,,",
	}, "\n")+"\n")
	if want := (ImportResult{Rows: 6, Inserted: 2, Bad: 4}); res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	var lines []int
	for _, e := range bad {
		lines = append(lines, e.Line)
		if e.Reason == "" {
			t.Errorf("line %d has no reason", e.Line)
		}
	}
	if !reflect.DeepEqual(lines, []int{3, 4, 5, 6}) {
		t.Errorf("bad lines %v: %v", lines, bad)
	}
	if n, err := s.CountConsumers(context.Background()); err != nil || n != 2 {
		t.Fatalf("CountConsumers = %d, %v", n, err)
	}

	ann := consumer(t, s, " ANN@example.com")
	if ann.ID == 0 || ann.FirstName != "Ann" || ann.BirthYear != 1980 || ann.Format != rewards.FormatHTML ||
		ann.Status != rewards.StatusActive || ann.PointsBalance != 0 {
		t.Errorf("ann = %+v", ann)
	}
	if !reflect.DeepEqual(ann.Interests, []string{"golf", "tennis"}) {
		t.Errorf("interests %q", ann.Interests)
	}
	if want := map[string]string{"plan": "gold", "member_since": "2019"}; !reflect.DeepEqual(ann.Attributes, want) {
		t.Errorf("attributes %v, want %v", ann.Attributes, want)
	}
	var interests, attrs string
	if err := s.read.QueryRow(`SELECT interests, attributes FROM consumers WHERE email = 'ann@example.com'`).Scan(&interests, &attrs); err != nil {
		t.Fatal(err)
	}
	if interests != ";golf;tennis;" || attrs != `{"member_since":"2019","plan":"gold"}` {
		t.Errorf("stored interests %q, attributes %s", interests, attrs)
	}
	if v, err := jsonField(s, "ann@example.com", "plan"); err != nil || v != "gold" {
		t.Errorf("the engine's JSON reads plan = %q, %v", v, err)
	}

	fay := consumer(t, s, "fay@example.com")
	if fay.Format != rewards.FormatText || fay.BirthYear != 0 || fay.Interests != nil || fay.Attributes != nil {
		t.Errorf("fay = %+v", fay)
	}
	if _, err := s.ConsumerByEmail(context.Background(), "bob@example.com"); !errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("absent consumer: %v", err)
	}
}

// jsonField reads the consumer's attribute key with the engine's own JSON functions.
func jsonField(s *Store, email, key string) (string, error) {
	var v string
	err := s.read.QueryRow(s.either(`SELECT json_extract(attributes, '$.' || ?) FROM consumers WHERE email = ?`,
		`SELECT attributes::jsonb ->> CAST(? AS text) FROM consumers WHERE email = ?`), key, email).Scan(&v)
	return v, err
}

func TestImportConsumersReimport(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	importCSV(t, s, "email,first_name,city,format,interests,plan,segment\n"+
		"ann@example.com,Ann,Leeds,html,golf,gold,new\n"+
		"bob@example.com,Bob,York,html,wine,silver,new\n"+
		"cy@example.com,Cy,Hull,text,,bronze,new\n")
	ann0 := consumer(t, s, "ann@example.com")
	if err := s.SetConsumerStatus(ctx, "Bob@Example.com", rewards.StatusUnsubscribed); err != nil {
		t.Fatal(err)
	}
	if err := s.SetConsumerStatus(ctx, "cy@example.com", rewards.StatusBounced); err != nil {
		t.Fatal(err)
	}
	if _, err := s.write.Exec(`UPDATE consumers SET points_balance = 250 WHERE email = 'ann@example.com'`); err != nil {
		t.Fatal(err)
	}
	s.Now = func() time.Time { return time.Now().Add(time.Hour) }

	// A second file with other columns: only what it gives changes.
	res, bad := importCSV(t, s, "EMAIL,City,Plan,tier\n"+
		"ann@example.com,Bath,platinum,1\n"+
		"BOB@example.com,,,\n"+
		"cy@example.com,Ely,,2\n"+
		"dee@example.com,Diss,gold,\n"+
		"ann@example.com,Wells,,\n")
	if want := (ImportResult{Rows: 5, Inserted: 1, Updated: 4}); res != want || len(bad) != 0 {
		t.Errorf("result %+v, want %+v; bad %v", res, want, bad)
	}
	if n, _ := s.CountConsumers(ctx); n != 4 {
		t.Errorf("%d consumers, want 4", n)
	}
	ann := consumer(t, s, "ann@example.com")
	if ann.ID != ann0.ID || ann.FirstName != "Ann" || ann.City != "Wells" || ann.Format != rewards.FormatHTML ||
		!reflect.DeepEqual(ann.Interests, []string{"golf"}) || ann.PointsBalance != 250 || ann.Status != rewards.StatusActive {
		t.Errorf("ann = %+v", ann)
	}
	if want := map[string]string{"plan": "platinum", "segment": "new", "tier": "1"}; !reflect.DeepEqual(ann.Attributes, want) {
		t.Errorf("ann attributes %v, want %v", ann.Attributes, want)
	}
	if bob := consumer(t, s, "bob@example.com"); bob.Status != rewards.StatusUnsubscribed || bob.City != "York" {
		t.Errorf("bob = %+v", bob)
	}
	if cy := consumer(t, s, "cy@example.com"); cy.Status != rewards.StatusBounced || cy.City != "Ely" || cy.Attributes["tier"] != "2" {
		t.Errorf("cy = %+v", cy)
	}
	if dee := consumer(t, s, "dee@example.com"); dee.Status != rewards.StatusActive {
		t.Errorf("dee = %+v", dee)
	}
	var created, updated int64
	if err := s.read.QueryRow(`SELECT created_at, updated_at FROM consumers WHERE email = 'ann@example.com'`).Scan(&created, &updated); err != nil {
		t.Fatal(err)
	}
	if updated-created < int64(time.Hour/time.Millisecond)-1000 {
		t.Errorf("created_at %d, updated_at %d", created, updated)
	}
}

// A quote opened and not closed in the middle of a file costs its own row only.
func TestImportConsumersBrokenQuote(t *testing.T) {
	s := openTest(t)
	var b strings.Builder
	b.WriteString("email,first_name,last_name\n")
	for i := range 100 {
		if i == 50 {
			b.WriteString(`broken@example.com,"Unclosed,Name` + "\n")
			continue
		}
		b.WriteString("u" + strconv.Itoa(i) + "@example.com,\"Name, " + strconv.Itoa(i) + "\",Last\n")
	}
	res, bad := importCSV(t, s, b.String())
	if want := (ImportResult{Rows: 100, Inserted: 99, Bad: 1}); res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	if len(bad) != 1 || bad[0].Line != 52 || !strings.Contains(bad[0].Reason, `"`) {
		t.Errorf("bad %v, want line 52", bad)
	}
	if c := consumer(t, s, "u51@example.com"); c.FirstName != "Name, 51" {
		t.Errorf("u51 = %+v", c)
	}
	if _, err := s.ConsumerByEmail(context.Background(), "broken@example.com"); !errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("broken row imported: %v", err)
	}
}

func TestImportConsumersHeaderError(t *testing.T) {
	s := openTest(t)
	if _, err := s.ImportConsumersCSV(context.Background(), strings.NewReader("name,city\nBob,York\n"), nil); err == nil {
		t.Fatal("import without an email column succeeded")
	}
}

// Several batches, bad rows among them, reported in file order with the pragmas put back.
func TestImportConsumersManyBatches(t *testing.T) {
	s := openTest(t)
	const n = 2*importBatch + 1234
	var b strings.Builder
	b.WriteString("email,birth_year\n")
	var wantBad []int
	for i := range n {
		if i%1000 == 7 {
			b.WriteString("user" + strconv.Itoa(i) + "@example.com,1066\n")
			wantBad = append(wantBad, i+2)
			continue
		}
		b.WriteString("user" + strconv.Itoa(i) + "@example.com,1990\n")
	}
	res, bad := importCSV(t, s, b.String())
	if want := (ImportResult{Rows: n, Inserted: n - len(wantBad), Bad: len(wantBad)}); res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	var lines []int
	for _, e := range bad {
		lines = append(lines, e.Line)
	}
	if !reflect.DeepEqual(lines, wantBad) {
		t.Errorf("bad lines %v, want %v", lines, wantBad)
	}
	if s.engine != engineSQLite {
		return // the pragmas below are SQLite's
	}
	var cacheSize, autoCheckpoint int
	if err := s.write.QueryRow(`PRAGMA cache_size`).Scan(&cacheSize); err != nil {
		t.Fatal(err)
	}
	if err := s.write.QueryRow(`PRAGMA wal_autocheckpoint`).Scan(&autoCheckpoint); err != nil {
		t.Fatal(err)
	}
	if cacheSize != -8000 || autoCheckpoint != 1000 {
		t.Errorf("after import cache_size %d, wal_autocheckpoint %d", cacheSize, autoCheckpoint)
	}
}

// A read error part way keeps the batches already written and says how many.
func TestImportConsumersReadError(t *testing.T) {
	s := openTest(t)
	var b strings.Builder
	b.WriteString("email\n")
	for i := range importBatch + 10 {
		b.WriteString("user" + strconv.Itoa(i) + "@example.com\n")
	}
	boom := errors.New("disk on fire")
	r := io.MultiReader(strings.NewReader(b.String()), &failingReader{boom})
	res, err := s.ImportConsumersCSV(context.Background(), r, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	n, _ := s.CountConsumers(context.Background())
	if res.Inserted != n || n < importBatch {
		t.Errorf("result %+v with %d consumers stored", res, n)
	}
}

type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestImportConsumersCancelled(t *testing.T) {
	s := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.ImportConsumersCSV(ctx, strings.NewReader("email\na@example.com\n"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestUpsertConsumers(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if ins, upd, err := s.UpsertConsumers(ctx, nil); ins != 0 || upd != 0 || err != nil {
		t.Fatalf("empty batch: %d %d %v", ins, upd, err)
	}
	batch := []rewards.Consumer{
		{Email: "A@example.com", Interests: []string{"Golf", "golf;Wine"}, Status: rewards.StatusSuppressed},
		{Email: "b@example.com", Format: rewards.FormatHTML, BirthYear: 1990},
		{Email: "a@example.com", FirstName: "Again"},
	}
	ins, upd, err := s.UpsertConsumers(ctx, batch)
	if ins != 2 || upd != 1 || err != nil {
		t.Fatalf("UpsertConsumers = %d, %d, %v", ins, upd, err)
	}
	a := consumer(t, s, "a@example.com")
	if a.FirstName != "Again" || a.Status != rewards.StatusSuppressed || !reflect.DeepEqual(a.Interests, []string{"golf", "wine"}) {
		t.Errorf("a = %+v", a)
	}
	// A bad row rolls back its whole batch.
	if _, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{{Email: "c@example.com"}, {Email: " "}}); err == nil {
		t.Error("batch with an empty address succeeded")
	}
	if _, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{{Email: "d@example.com", Format: "pdf"}}); err == nil {
		t.Error("batch with format pdf succeeded")
	}
	if n, _ := s.CountConsumers(ctx); n != 2 {
		t.Errorf("%d consumers after failed batches, want 2", n)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.UpsertConsumers(cancelled, batch); err == nil {
		t.Error("cancelled context: no error")
	}
}

// TestUpsertConsumersSameAddressAgain: an address twice or more in one batch is written as
// one row at a time would write it, the later rows over the earlier (an empty field keeps,
// attributes merge, status is the first's), and counts once inserted and then updated; an
// enrollment's later rows merge attributes alone. New consumers take ids in the batch's order.
func TestUpsertConsumersSameAddressAgain(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	ins, upd, err := s.UpsertConsumers(ctx, []rewards.Consumer{
		{Email: "zed@example.com", FirstName: "Zed"},
		{Email: "dup@example.com", FirstName: "First", City: "Leeds", Format: rewards.FormatHTML,
			Attributes: map[string]string{"plan": "gold", "segment": "a"}, Status: rewards.StatusSuppressed},
		{Email: "amy@example.com", FirstName: "Amy"},
		{Email: " DUP@example.com", FirstName: "Second", BirthYear: 1970, Attributes: map[string]string{"segment": "b"}},
		{Email: "dup@example.com", LastName: "Third", Format: rewards.FormatText},
	})
	if ins != 3 || upd != 2 || err != nil {
		t.Fatalf("UpsertConsumers = %d, %d, %v; want 3, 2", ins, upd, err)
	}
	dup := consumer(t, s, "dup@example.com")
	want := rewards.Consumer{ID: dup.ID, Email: "dup@example.com", FirstName: "Second", LastName: "Third", City: "Leeds",
		BirthYear: 1970, Format: rewards.FormatText, Attributes: map[string]string{"plan": "gold", "segment": "b"},
		Status: rewards.StatusSuppressed}
	if !reflect.DeepEqual(*dup, want) {
		t.Errorf("dup\n got %+v\nwant %+v", *dup, want)
	}
	zed, amy := consumer(t, s, "zed@example.com"), consumer(t, s, "amy@example.com")
	if !(zed.ID < dup.ID && dup.ID < amy.ID) {
		t.Errorf("ids zed %d, dup %d, amy %d: not in the batch's order", zed.ID, dup.ID, amy.ID)
	}

	// Again, all of them existing: every row an update, the format given last kept.
	ins, upd, err = s.UpsertConsumers(ctx, []rewards.Consumer{
		{Email: "dup@example.com", Format: rewards.FormatHTML, City: "York"},
		{Email: "amy@example.com", Format: rewards.FormatHTML},
		{Email: "dup@example.com", FirstName: "Fourth"},
	})
	if ins != 0 || upd != 3 || err != nil {
		t.Fatalf("second UpsertConsumers = %d, %d, %v; want 0, 3", ins, upd, err)
	}
	want.FirstName, want.City, want.Format = "Fourth", "York", rewards.FormatHTML
	if dup := consumer(t, s, "dup@example.com"); !reflect.DeepEqual(*dup, want) {
		t.Errorf("dup after the second batch\n got %+v\nwant %+v", *dup, want)
	}
	if amy := consumer(t, s, "amy@example.com"); amy.Format != rewards.FormatHTML || amy.FirstName != "Amy" {
		t.Errorf("amy = %+v", amy)
	}

	// An enrollment: the new address takes the first row's profile, the later rows add
	// attributes.
	ins, upd, err = s.EnrollConsumers(ctx, "acme", []rewards.Consumer{
		{Email: "neo@example.com", FirstName: "Neo", Attributes: map[string]string{"x": "1"}},
		{Email: "neo@example.com", FirstName: "Mallory", Format: rewards.FormatHTML, Attributes: map[string]string{"y": "2"}},
		{Email: "neo@example.com", FirstName: "Eve"},
	})
	if ins != 1 || upd != 2 || err != nil {
		t.Fatalf("EnrollConsumers = %d, %d, %v; want 1, 2", ins, upd, err)
	}
	if neo := consumer(t, s, "neo@example.com"); neo.FirstName != "Neo" || neo.Format != rewards.FormatText ||
		!reflect.DeepEqual(neo.Attributes, map[string]string{"acme:x": "1", "acme:y": "2"}) {
		t.Errorf("neo = %+v", neo)
	}
}

// TestUpsertConsumersBadRowNamed: a row the table refuses fails its batch with its address,
// whether it is new or updates a consumer, and nothing of the batch is written.
func TestUpsertConsumersBadRowNamed(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{{Email: "old@example.com", City: "Leeds"}}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []rewards.Consumer{
		{Email: "New@example.com", Format: "pdf"},
		{Email: "old@example.com", Format: "pdf"},
		{Email: "new@example.com", Status: "gone"},
	} {
		_, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{
			{Email: "a@example.com"}, {Email: "old@example.com", City: "York"}, bad, {Email: "b@example.com"}})
		if email := strings.ToLower(bad.Email); err == nil || !strings.Contains(err.Error(), "consumer "+email+":") {
			t.Errorf("batch with %+v: error %v, want one naming %s", bad, err, email)
		}
	}
	if n, _ := s.CountConsumers(ctx); n != 1 {
		t.Errorf("%d consumers after failed batches, want 1", n)
	}
	if old := consumer(t, s, "old@example.com"); old.City != "Leeds" || old.Format != rewards.FormatText {
		t.Errorf("old = %+v", old)
	}
}

// TestImportConsumersTwoStoresAtOnce: two stores on one database (two processes) writing
// overlapping batches at the same time each count what they inserted; together, every new
// address once.
func TestImportConsumersTwoStoresAtOnce(t *testing.T) {
	ctx := context.Background()
	first := openTest(t)
	stores := [2]*Store{first, openAgain(t, first)}
	email := func(i int) string { return fmt.Sprintf("c%05d@example.com", i) }
	const existing, n, batch = 500, 6000, 1000
	var old []rewards.Consumer
	for i := range existing {
		old = append(old, rewards.Consumer{Email: email(i * 7)}) // spread over both halves
	}
	if ins, _, err := stores[0].UpsertConsumers(ctx, old); ins != existing || err != nil {
		t.Fatalf("existing consumers: %d, %v", ins, err)
	}
	// The first store writes 0 to 3999 upwards, the second 2000 to 5999 downwards: they
	// meet in the middle, each batch overlapping some of the other's.
	orders := [2][]int{}
	for i := range 4000 {
		orders[0] = append(orders[0], i)
		orders[1] = append(orders[1], n-1-i)
	}
	type counts struct{ inserted, updated int }
	var got [2]counts
	errs := make(chan error, 2)
	start := make(chan struct{})
	for w := range stores {
		go func() {
			<-start
			for from := 0; from < len(orders[w]); from += batch {
				var b []rewards.Consumer
				for _, i := range orders[w][from : from+batch] {
					b = append(b, rewards.Consumer{Email: email(i), FirstName: fmt.Sprint("store ", w)})
				}
				ins, upd, err := stores[w].UpsertConsumers(ctx, b)
				if err != nil {
					errs <- fmt.Errorf("store %d, batch at %d: %w", w, from, err)
					return
				}
				got[w].inserted += ins
				got[w].updated += upd
			}
			errs <- nil
		}()
	}
	close(start)
	for range stores {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for w, c := range got {
		if c.inserted+c.updated != len(orders[w]) {
			t.Errorf("store %d counted %+v for %d rows", w, c, len(orders[w]))
		}
	}
	if sum := got[0].inserted + got[1].inserted; sum != n-existing {
		t.Errorf("inserted %d + %d = %d, want the %d new addresses", got[0].inserted, got[1].inserted, sum, n-existing)
	}
	if c, err := stores[1].CountConsumers(ctx); c != n || err != nil {
		t.Errorf("CountConsumers = %d, %v; want %d", c, err, n)
	}
}

func TestSetConsumerStatus(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.SetConsumerStatus(ctx, "nobody@example.com", rewards.StatusBounced); !errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("absent: %v", err)
	}
	if _, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{{Email: "a@example.com"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetConsumerStatus(ctx, "a@example.com", "gone"); err == nil {
		t.Error("status gone accepted")
	}
	if err := s.SetConsumerStatus(ctx, "a@example.com", rewards.StatusSuppressed); err != nil {
		t.Fatal(err)
	}
	if c := consumer(t, s, "a@example.com"); c.Status != rewards.StatusSuppressed {
		t.Errorf("status %q", c.Status)
	}
}

func TestImportDemoConsumers(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const n = 2000
	var batch []rewards.Consumer
	if err := rewards.DemoConsumers(n, 1, func(c rewards.Consumer) error {
		batch = append(batch, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if ins, upd, err := s.UpsertConsumers(ctx, batch); ins != n || upd != 0 || err != nil {
		t.Fatalf("UpsertConsumers = %d, %d, %v", ins, upd, err)
	}
	got := consumer(t, s, batch[7].Email)
	want := batch[7]
	want.ID = got.ID
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("round trip\n got %+v\nwant %+v", *got, want)
	}
}

// writeDemoCSV writes n demo consumers as a consumer CSV, as an operator's export would be.
func writeDemoCSV(w io.Writer, n int, seed int64) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"email", "first_name", "last_name", "city", "region", "country", "postal_code",
		"birth_year", "gender", "interests", "format", "plan", "segment"})
	rec := make([]string, 13)
	err := rewards.DemoConsumers(n, seed, func(c rewards.Consumer) error {
		rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6] = c.Email, c.FirstName, c.LastName, c.City, c.Region, c.Country, c.PostalCode
		rec[7], rec[8], rec[9], rec[10] = strconv.Itoa(c.BirthYear), c.Gender, strings.Join(c.Interests, ";"), string(c.Format)
		rec[11], rec[12] = c.Attributes["plan"], c.Attributes["segment"]
		return cw.Write(rec)
	})
	cw.Flush()
	return errors.Join(err, cw.Error())
}

// BenchmarkImportConsumers imports 100,000 consumers from an in-memory CSV into a fresh
// database per iteration, parsing included; with POINTPOST_TEST_ENGINE=postgres, into a fresh
// PostgreSQL database.
func BenchmarkImportConsumers(b *testing.B) {
	const rows = 100_000
	var data strings.Builder
	if err := writeDemoCSV(&data, rows, 1); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(data.Len()))
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		s, err := Open(context.Background(), testDatabase(b))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		res, err := s.ImportConsumersCSV(context.Background(), strings.NewReader(data.String()), nil)
		elapsed += time.Since(start)
		if err != nil || res.Inserted != rows {
			b.Fatalf("import: %+v, %v", res, err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(rows*b.N)/elapsed.Seconds(), "rows/s")
}

// TestImportMillion imports 1,000,000 demo consumers from a CSV file, then re-imports the
// file as updates, logging the rate of each pass (the speed to hold is BenchmarkImportConsumers').
// Run it with POINTPOST_BIG=1 go test -run TestImportMillion -v ./store/
func TestImportMillion(t *testing.T) {
	if os.Getenv("POINTPOST_BIG") != "1" {
		t.Skip("set POINTPOST_BIG=1 to import a million consumers")
	}
	const rows = 1_000_000
	file := filepath.Join(t.TempDir(), "consumers.csv")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	start := time.Now()
	if err := errors.Join(writeDemoCSV(w, rows, 1), w.Flush(), f.Close()); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(file)
	t.Logf("wrote %d rows, %d MB of CSV in %v", rows, info.Size()>>20, time.Since(start).Round(time.Millisecond))

	s := openTest(t)
	for _, pass := range []string{"insert", "update"} {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		res, err := s.ImportConsumersCSV(context.Background(), f, nil)
		took := time.Since(start)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s pass: %+v in %v (%.0f rows/s)", pass, res, took.Round(time.Millisecond), rows/took.Seconds())
		if res.Rows != rows || res.Bad != 0 || res.Inserted+res.Updated != rows {
			t.Errorf("result %+v", res)
		}
	}
	if n, err := s.CountConsumers(context.Background()); err != nil || n != rows {
		t.Errorf("CountConsumers = %d, %v", n, err)
	}
}

// TestStatusGenerationMovesWithEveryStatusChange: every write that takes a consumer out of
// 'active' moves StatusGeneration once it is committed, and writes that change no status
// (refused, duplicate, unverified, already so) leave it, so a mail server rereads statuses
// only when one may have changed.
func TestStatusGenerationMovesWithEveryStatusChange(t *testing.T) {
	s, job, ids := bounceFixture(t, 8)
	ctx := context.Background()
	email := func(i int) string { return fmt.Sprintf("c%06d@example.com", i) }
	step := func(what string, wantMove bool, write func() error) {
		t.Helper()
		before := s.StatusGeneration()
		if err := write(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if moved := s.StatusGeneration() != before; moved != wantMove {
			t.Errorf("%s: generation moved %v, want %v", what, moved, wantMove)
		}
	}
	refused := func(what string, write func() error) {
		t.Helper()
		before := s.StatusGeneration()
		if err := write(); err == nil {
			t.Errorf("%s: no error", what)
		}
		if s.StatusGeneration() != before {
			t.Errorf("%s: refused, yet the generation moved", what)
		}
	}

	step("SetConsumerStatus unsubscribed", true, func() error {
		return s.SetConsumerStatus(ctx, email(0), rewards.StatusUnsubscribed)
	})
	refused("SetConsumerStatus to an unknown status", func() error { return s.SetConsumerStatus(ctx, email(1), "gone") })
	refused("SetConsumerStatus of nobody", func() error {
		return s.SetConsumerStatus(ctx, "nobody@example.com", rewards.StatusBounced)
	})

	step("Unsubscribe", true, func() error { return s.Unsubscribe(ctx, ids[1]) })
	step("Unsubscribe again", false, func() error { return s.Unsubscribe(ctx, ids[1]) })
	refused("Unsubscribe of nobody", func() error { return s.Unsubscribe(ctx, ids[7]+1000) })

	hard := func(key string, i int) *Bounce {
		return &Bounce{Message: InboundMessage{Kind: "bounce", JobKey: job.Key, ConsumerID: ids[i]}, Key: key,
			Failures: []BounceFailure{{Email: email(i), Severity: BounceHard, Status: "5.1.1", Detail: "user unknown"}}}
	}
	step("hard bounce", true, func() error { return s.RecordBounce(ctx, hard("<h2@mx>", 2)) })
	step("the same bounce again", false, func() error { return s.RecordBounce(ctx, hard("<h2@mx>", 2)) })
	step("a bounce naming no delivery", false, func() error {
		b := hard("<h3@mx>", 3)
		b.Message.JobKey, b.Message.ConsumerID = 0, 0
		return s.RecordBounce(ctx, b)
	})
	step("complaint", true, func() error {
		return s.RecordBounce(ctx, &Bounce{Message: InboundMessage{Kind: "complaint", JobKey: job.Key, ConsumerID: ids[3]},
			Key: "<c3@fbl>", Complaint: true})
	})

	if err := s.SetSoftBounceLimit(ctx, 2); err != nil {
		t.Fatal(err)
	}
	soft := func(key string) *Bounce {
		return &Bounce{Message: InboundMessage{Kind: "bounce", JobKey: job.Key, ConsumerID: ids[4]}, Key: key,
			Failures: []BounceFailure{{Email: email(4), Severity: BounceSoft, Status: "4.2.2", Detail: "mailbox full"}}}
	}
	step("first soft bounce, under the limit", false, func() error { return s.RecordBounce(ctx, soft("<s1@mx>")) })
	step("soft bounce reaching the limit", true, func() error { return s.RecordBounce(ctx, soft("<s2@mx>")) })

	d5, err := s.Delivery(ctx, job.Key, ids[5])
	if err != nil {
		t.Fatal(err)
	}
	d6, err := s.Delivery(ctx, job.Key, ids[6])
	if err != nil {
		t.Fatal(err)
	}
	d7, err := s.Delivery(ctx, job.Key, ids[7])
	if err != nil {
		t.Fatal(err)
	}
	// The fixture sent every delivery; these two are refused at send time instead (a
	// refusal of a delivery already recorded sent is not recorded, nor counted).
	if _, err := s.write.Exec(`UPDATE deliveries SET sent = 0, sent_at = 0 WHERE id IN (?, ?)`, d5.ID, d7.ID); err != nil {
		t.Fatal(err)
	}
	step("a sent outcome and a policy refusal", false, func() error {
		return s.RecordOutcomes(ctx, []postoffice.Outcome{
			{DeliveryID: d6.ID, Kind: postoffice.OutcomeSent, At: ackT0},
			{DeliveryID: d7.ID, Kind: postoffice.OutcomeRejected, At: ackT0, Error: "SMTP error 554: 5.7.1 blocked",
				Refusal: postoffice.Refusal{Reply: 554, Status: "5.7.1", Class: postoffice.RefusalPolicy}},
		})
	})
	step("a refusal at send time naming a bad address", true, func() error {
		return s.RecordOutcomes(ctx, []postoffice.Outcome{
			{DeliveryID: d5.ID, Kind: postoffice.OutcomeRejected, At: ackT0, Error: "SMTP error 550: 5.1.1 no such user",
				Refusal: postoffice.Refusal{Reply: 550, Status: "5.1.1", Class: postoffice.RefusalHard}},
		})
	})

	want := map[int64]rewards.ConsumerStatus{ids[0]: rewards.StatusUnsubscribed, ids[1]: rewards.StatusUnsubscribed,
		ids[2]: rewards.StatusBounced, ids[3]: rewards.StatusSuppressed, ids[4]: rewards.StatusBounced,
		ids[5]: rewards.StatusBounced, ids[6]: rewards.StatusActive, ids[7]: rewards.StatusActive}
	got, err := s.ConsumerStatuses(ctx, append(slices.Clone(ids), ids[7]+1000))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ConsumerStatuses = %v, want %v (an unknown id absent)", got, want)
	}
}

// TestConsumerStatuses: one query answers for any number of ids, none is an empty answer,
// and the end of the context is an error.
func TestConsumerStatuses(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	ids := seedAckConsumers(t, s, 3)
	if got, err := s.ConsumerStatuses(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("no ids: %v, %v", got, err)
	}
	// Far more ids than SQLite allows bound variables in one statement.
	many := make([]int64, 0, 40000)
	for i := range int64(40000) {
		many = append(many, ids[0]+i)
	}
	got, err := s.ConsumerStatuses(ctx, many)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[ids[0]] != rewards.StatusActive || got[ids[2]] != rewards.StatusActive {
		t.Errorf("40000 ids, 3 consumers: %v", got)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.ConsumerStatuses(cancelled, ids); err == nil {
		t.Error("cancelled context: no error")
	}
}
