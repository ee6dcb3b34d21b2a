package sinks

import (
	"context"
	"fmt"
	"time"

	"logship/internal/wire"
)

// Status returns what the aggregator reports of itself: its agents,
// partitions and every sink's position.
func (c *Client) Status(ctx context.Context) (*wire.Status, error) {
	req := c.nextReq()
	c.buf = (&wire.StatusRequest{Req: req}).Encode(c.buf[:0])
	p, err := c.roundTrip(ctx, wire.TypeStatus, c.buf, wire.TypeStatusResult, req, 0)
	if err != nil {
		return nil, err
	}
	var m wire.StatusResult
	if err := m.Decode(p); err != nil {
		c.err = err
		return nil, fmt.Errorf("sinks: status from %s: %w", c.addr, err)
	}
	return &m.Status, nil
}

// OffsetForTime returns the first offset of a partition appended at or
// after t (the partition's end when nothing is that recent).
func (c *Client) OffsetForTime(ctx context.Context, topic string, partition int, t time.Time) (int64, error) {
	req := c.nextReq()
	c.buf = (&wire.OffsetForTime{Req: req, Topic: topic, Partition: uint32(partition), TimeMs: t.UnixMilli()}).Encode(c.buf[:0])
	p, err := c.roundTrip(ctx, wire.TypeOffsetForTime, c.buf, wire.TypeOffsetTime, req, 0)
	if err != nil {
		return 0, err
	}
	var m wire.OffsetTime
	if err := m.Decode(p); err != nil {
		c.err = err
		return 0, fmt.Errorf("sinks: offset for time from %s: %w", c.addr, err)
	}
	switch m.Status {
	case wire.TimeOK:
		return m.Offset, nil
	case wire.TimeUnknownPartition:
		return 0, fmt.Errorf("%w: %s/%s/%d", ErrUnknownPartition, c.agg, topic, partition)
	}
	return 0, fmt.Errorf("sinks: offset for time from %s: %s", c.addr, m.Message)
}
