//go:build !slow

package agent

import "time"

// aggDownFor is how long TestAggregatorStoppedAndRestarted keeps the
// aggregator stopped: 2s in make test, 30s in the slow suite (make soak).
const aggDownFor = 2 * time.Second
