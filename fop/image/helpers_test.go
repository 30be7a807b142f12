package image

import "fmt"

func fmtSscanf(s string, c *[3]int) (int, error) {
	return fmt.Sscanf(s, "0x%02x%02x%02x", &c[0], &c[1], &c[2])
}
