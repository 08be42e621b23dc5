// See dksystem.h: thin wrappers only, every decision lives in Swift.
#define _GNU_SOURCE
#include "dksystem.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <unistd.h>

long dk_getdents64(int fd, void *buf, size_t len) { return syscall(SYS_getdents64, fd, buf, len); }

ssize_t dk_lgetxattr(const char *p, const char *n, void *v, size_t s) { return lgetxattr(p, n, v, s); }
ssize_t dk_fgetxattr(int fd, const char *n, void *v, size_t s) { return fgetxattr(fd, n, v, s); }
ssize_t dk_llistxattr(const char *p, char *l, size_t s) { return llistxattr(p, l, s); }
ssize_t dk_flistxattr(int fd, char *l, size_t s) { return flistxattr(fd, l, s); }
int dk_lsetxattr(const char *p, const char *n, const void *v, size_t s) { return lsetxattr(p, n, v, s, 0); }
int dk_fsetxattr(int fd, const char *n, const void *v, size_t s) { return fsetxattr(fd, n, v, s, 0); }

uint64_t dk_makedev(uint32_t ma, uint32_t mi) { return makedev(ma, mi); }
uint32_t dk_major(uint64_t d) { return major(d); }
uint32_t dk_minor(uint64_t d) { return minor(d); }

int dk_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
#ifdef SYS_openat2
    struct open_how how = { .flags = flags, .mode = mode, .resolve = resolve };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
#else
    errno = ENOSYS;
    return -1;
#endif
}
uint64_t dk_resolve_in_root(void) { return RESOLVE_IN_ROOT; }
uint64_t dk_resolve_no_magiclinks(void) { return RESOLVE_NO_MAGICLINKS; }

ssize_t dk_copy_file_range(int in, int out, size_t len) { return copy_file_range(in, NULL, out, NULL, len, 0); }
int dk_ficlone(int dst, int src) { return ioctl(dst, FICLONE, src); }
int dk_o_path(void) { return O_PATH; }
int dk_set_pipe_size(int fd, int size) { return fcntl(fd, F_SETPIPE_SZ, size); }
int dk_mknodat(int dirfd, const char *path, uint32_t mode, uint64_t dev) { return mknodat(dirfd, path, mode, dev); }
int dk_statfs_type(int fd, int64_t *type) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) return -1;
    *type = (int64_t)s.f_type;
    return 0;
}

#ifndef SYS_listxattrat
#define SYS_listxattrat 465
#endif
ssize_t dk_listxattrat(int dirfd, const char *name, char *list, size_t size) {
    return syscall(SYS_listxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, list, size);
}

int dk_memfd(const char *name) { return (int)syscall(SYS_memfd_create, name, 1u /* MFD_CLOEXEC */); }

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DK_TSAN 1
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#endif
#endif

void dk_tsan_acquire(const void *addr) {
#ifdef DK_TSAN
    __tsan_acquire((void *)addr);
#else
    (void)addr;
#endif
}

void dk_tsan_release(const void *addr) {
#ifdef DK_TSAN
    __tsan_release((void *)addr);
#else
    (void)addr;
#endif
}

int dk_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
