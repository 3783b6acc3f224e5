package postoffice

import "testing"

// TestInboundCursorRoundTrip: a cursor reads back as written; anything else is refused.
func TestInboundCursorRoundTrip(t *testing.T) {
	for _, c := range []InboundCursor{{AtMS: 1746090000000, ID: 7}, {AtMS: 1746090000000, Ack: true, ID: 7}, {AtMS: 0, ID: 1}} {
		got, err := ParseInboundCursor(c.String())
		if err != nil || got != c {
			t.Errorf("%+v reads back as %+v, %v", c, got, err)
		}
	}
	for _, bad := range []string{"", "x", "12", "12-", "12-a", "12-x3", "-4", "12-m0", "12-m-3", "a-m3", "12-m3x", "-1-m3"} {
		if c, err := ParseInboundCursor(bad); err == nil {
			t.Errorf("%q reads as %+v, want an error", bad, c)
		}
	}
}
