package prom

import "syscall"

func init() { procAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
