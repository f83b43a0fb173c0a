package exec

import "golang.org/x/sys/unix"

func setPipeSize(fd uintptr, size int) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size) }
