package gateway

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/qufop/qufop/classq"
)

// QueueSize bounds each class unless a class's own size is set; weights
// under 1 are refused (a class with weight 0 would starve).
func TestConfigQueueClasses(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mod       func(*Config)
		want      classq.Bounds
		wantError string
	}{
		{"default: the same bound each", func(c *Config) { c.QueueSize = 8 }, classq.Bounds{Paid: 8, Free: 8}, ""},
		{"paid's own", func(c *Config) { c.QueueSize, c.QueueSizePaid = 8, 32 }, classq.Bounds{Paid: 32, Free: 8}, ""},
		{"free's own", func(c *Config) { c.QueueSize, c.QueueSizeFree = 8, 2 }, classq.Bounds{Paid: 8, Free: 2}, ""},
		{"no free queue, a paid one", func(c *Config) { c.QueueSize, c.QueueSizePaid = 0, 4 }, classq.Bounds{Paid: 4, Free: 0}, ""},
		{"negative", func(c *Config) { c.QueueSizePaid = -1 }, classq.Bounds{}, "queue sizes must not be negative"},
		{"weights 2:1", func(c *Config) { c.QueueSize, c.QueueWeights = 1, classq.Weights{Paid: 2, Free: 1} }, classq.Bounds{Paid: 1, Free: 1}, ""},
		{"weight 0", func(c *Config) { c.QueueWeights = classq.Weights{Paid: 4} }, classq.Bounds{}, "weights must be at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewDefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if tc.wantError != "" {
				assert.ErrorContains(t, err, tc.wantError)
				return
			}
			assert.NoError(t, err)
			assert.Equal(t, tc.want, c.QueueBounds())
		})
	}
}

// The default paid reserve is a quarter of the workers, one from two on;
// a negative one is refused.
func TestConfigPaidReserve(t *testing.T) {
	for n, want := range map[int]int{1: 0, 2: 1, 3: 1, 4: 1, 8: 2, 16: 4} {
		assert.Equal(t, want, paidReserve(n), "%d workers", n)
	}
	c := NewDefaultConfig()
	c.PaidReserve = -1
	assert.ErrorContains(t, c.Validate(), "paid reserve must not be negative, got -1")
}
