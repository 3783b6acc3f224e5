package store

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestZZExp(t *testing.T) {
	rows, _ := strconv.Atoi(os.Getenv("ZZ_ROWS"))
	if rows == 0 { t.Skip() }
	var data strings.Builder
	if err := writeDemoCSV(&data, rows, 1); err != nil { t.Fatal(err) }
	s := openTest(t)
	if cs := os.Getenv("ZZ_CACHE"); cs != "" {
		if _, err := s.write.Exec("PRAGMA cache_size=" + cs); err != nil { t.Fatal(err) }
	}
	start := time.Now()
	res, err := s.ImportConsumersCSV(context.Background(), strings.NewReader(data.String()), nil)
	if err != nil { t.Fatal(err) }
	t.Logf("%+v in %v", res, time.Since(start))
}
