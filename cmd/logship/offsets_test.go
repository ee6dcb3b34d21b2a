package main

import "testing"

func TestAppliedNote(t *testing.T) {
	for _, c := range []struct {
		i, n int
		want string
	}{
		{0, 1, ""},
		{0, 3, ""},
		{1, 2, " (1 of the 2 steps was applied: the one before this)"},
		{2, 3, " (2 of the 3 steps were applied: those before this one)"},
	} {
		if got := appliedNote(c.i, c.n); got != c.want {
			t.Errorf("appliedNote(%d, %d) = %q, want %q", c.i, c.n, got, c.want)
		}
	}
}
