package timeflag

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "6h", want: now.Add(-6 * time.Hour)},
		{in: "90m", want: now.Add(-90 * time.Minute)},
		{in: "7d", want: now.Add(-7 * 24 * time.Hour)},
		{in: "1d12h", want: now.Add(-36 * time.Hour)},
		{in: "0s", want: now},
		{in: "2026-11-28T06:00:00Z", want: now.Add(-6 * time.Hour)},
		{in: "2026-11-28T07:00:00+01:00", want: now.Add(-6 * time.Hour)},
		{in: "2026-11-28T06:00:00.5Z", want: now.Add(-6*time.Hour + 500*time.Millisecond)},
		{in: "2026-11-27", want: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)},
		{in: "-1h", wantErr: true},
		{in: "yesterday", wantErr: true},
		{in: "2026-11-28 06:00", wantErr: true},
		{in: "", wantErr: true},
		{in: "xd", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tc.in, now)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Parse(%q) error %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "RFC 3339") && !strings.Contains(err.Error(), "negative") {
					t.Fatalf("error %q does not name the accepted formats", err)
				}
				return
			}
			if !got.Equal(tc.want) {
				t.Fatalf("Parse(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestValueAbsolute(t *testing.T) {
	t.Parallel()
	v := Value{Now: func() time.Time { return time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC) }}
	if v.Absolute() != "" {
		t.Fatalf("unset Absolute() = %q", v.Absolute())
	}
	if err := v.Set("30m"); err != nil {
		t.Fatal(err)
	}
	if v.String() != "30m" || v.Absolute() != "2026-11-28T11:30:00Z" {
		t.Fatalf("String %q Absolute %q", v.String(), v.Absolute())
	}
}
