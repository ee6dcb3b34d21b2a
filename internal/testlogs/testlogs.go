// Package testlogs makes realistic log lines for tests and benchmarks:
// lines that vary as real ones do, so that compression speeds and ratios
// measured on them are those users get; and collects what the code under
// test logs (Buffer). It is used by test files only.
package testlogs

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// T0 is the time of the first line.
var T0 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

var (
	paths    = []string{"/", "/api/v1/users", "/api/v1/orders", "/static/app.js", "/login", "/api/v1/search", "/healthz"}
	agents   = []string{"Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Go-http-client/1.1", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2)"}
	statuses = []int{200, 200, 200, 304, 404, 500}
)

// AccessLine returns an nginx-style access line (no newline) for the
// request i milliseconds after T0, its fields drawn from r. A line shorter
// than size-1 bytes is padded with " rt=0…" so that, with its newline, it
// is about size bytes; size 0 leaves it as it is.
func AccessLine(r *rand.Rand, i, size int) string {
	line := fmt.Sprintf(`10.%d.%d.%d - - [%s] "GET %s?id=%d HTTP/1.1" %d %d "-" "%s"`,
		r.IntN(256), r.IntN(256), r.IntN(256), T0.Add(time.Duration(i)*time.Millisecond).Format("02/Jan/2006:15:04:05 -0700"),
		paths[r.IntN(len(paths))], r.IntN(1e6), statuses[r.IntN(len(statuses))], r.IntN(1e5), agents[r.IntN(len(agents))])
	if pad := size - len(line) - 1; pad > 0 {
		line += " rt=" + strings.Repeat("0", max(pad-4, 0))
	}
	return line
}
