// dksystem: the syscalls and macros Swift cannot reach through Glibc (xattrs, makedev,
// getdents64, openat2, copy_file_range, FICLONE, O_PATH, F_SETPIPE_SZ, memfd) and the
// ThreadSanitizer annotations. Nothing else; what only drivers need is in dkdrivers.h.
#ifndef DKSYSTEM_H
#define DKSYSTEM_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

long dk_getdents64(int fd, void *buf, size_t len);

ssize_t dk_lgetxattr(const char *path, const char *name, void *value, size_t size);
ssize_t dk_fgetxattr(int fd, const char *name, void *value, size_t size);
ssize_t dk_llistxattr(const char *path, char *list, size_t size);
ssize_t dk_flistxattr(int fd, char *list, size_t size);
int dk_lsetxattr(const char *path, const char *name, const void *value, size_t size);
int dk_fsetxattr(int fd, const char *name, const void *value, size_t size);

uint64_t dk_makedev(uint32_t major, uint32_t minor);
uint32_t dk_major(uint64_t dev);
uint32_t dk_minor(uint64_t dev);

// openat2(2) with RESOLVE_* flags; returns -1 and sets errno (ENOSYS where the kernel lacks it).
int dk_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
uint64_t dk_resolve_in_root(void);
uint64_t dk_resolve_no_magiclinks(void);

ssize_t dk_copy_file_range(int fd_in, int fd_out, size_t len);
int dk_ficlone(int dst, int src);
int dk_o_path(void);
// listxattrat(2) (Linux 6.13+), not following a final symlink; -1/ENOSYS on older kernels.
ssize_t dk_listxattrat(int dirfd, const char *name, char *list, size_t size);
// Grow a pipe to `size` bytes (F_SETPIPE_SZ); returns the new size or -1.
int dk_set_pipe_size(int fd, int size);
int dk_mknodat(int dirfd, const char *path, uint32_t mode, uint64_t dev);
int dk_statfs_type(int fd, int64_t *type);

// An anonymous in-memory file (memfd_create), close-on-exec.
int dk_memfd(const char *name);

// Tell ThreadSanitizer that the lock at `addr` was taken (acquire) or is about to be let go
// (release); nothing outside a --sanitize=thread build. Swift's Synchronization.Mutex takes its
// slow path in the kernel (futex), where the sanitizer cannot see the hand-over.
void dk_tsan_acquire(const void *addr);
void dk_tsan_release(const void *addr);
// pipe2(2) with O_CLOEXEC (glibc declares it only under _GNU_SOURCE).
int dk_pipe_cloexec(int fds[2]);
#endif
