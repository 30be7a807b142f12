// Command qufop is the one binary of the platform; see package cli.
package main

import "github.com/qufop/qufop/cli"

func main() { cli.Main() }
