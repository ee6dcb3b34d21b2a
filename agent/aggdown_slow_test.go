//go:build slow

package agent

import "time"

// aggDownFor: the slow suite stops the aggregator for the 30 s of issue 4.
const aggDownFor = 30 * time.Second
