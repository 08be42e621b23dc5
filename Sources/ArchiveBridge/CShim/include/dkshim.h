// dkshim: the syscalls and macros Swift cannot reach through Glibc (xattrs, makedev,
// getdents64, openat2, copy_file_range, FICLONE, O_PATH, F_SETPIPE_SZ, the new mount API,
// a mount from another directory, project quotas, btrfs ioctls) and a CRC-32C. Nothing else.
#ifndef DKSHIM_H
#define DKSHIM_H
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

// The new mount API (Linux 5.2+): build an overlay superblock parameter by parameter, so a
// lower-dir list is not bound by mount(2)'s one page of data (`lowerdir+` needs Linux 6.8).
// Each returns -1 and sets errno on failure.
int dk_fsopen(const char *fstype);
int dk_fsconfig_string(int fsfd, const char *key, const char *value);
int dk_fsconfig_flag(int fsfd, const char *key);
int dk_fsconfig_create(int fsfd);
int dk_fsmount(int fsfd);
int dk_move_mount(int mntfd, const char *target);

// mount(2) of overlay with paths relative to `dir`: done in a forked child that chdir()s first,
// so the caller's working directory never changes. Returns 0 or an errno.
int dk_mount_overlay_from(const char *dir, const char *target, const char *data);

// Project quotas (xfs): the project ID of an open directory, setting it (with PROJINHERIT),
// and the limit/usage of a project through quotactl_fd(2) on any fd of the filesystem, or
// quotactl(2) on `device` where quotactl_fd is missing (ENOSYS). 0 or -1 with errno.
int dk_get_project(int fd, uint32_t *id);
int dk_set_project(int fd, uint32_t id);
int dk_project_set_limit(int fsfd, const char *device, uint32_t id, uint64_t bytes);
int dk_project_get(int fsfd, const char *device, uint32_t id, uint64_t *limit, uint64_t *used);

// btrfs (linux/btrfs.h): subvolumes, snapshots and qgroups; `dirfd` is the directory holding
// `name`, `fd` an open directory inside the subvolume or filesystem. 0 or -1 with errno.
int dk_btrfs_subvol_create(int dirfd, const char *name);
int dk_btrfs_snapshot(int srcfd, int dirfd, const char *name);
int dk_btrfs_subvol_destroy(int dirfd, const char *name);
int dk_btrfs_quota_ctl(int fd, int enable);
int dk_btrfs_quota_rescan_wait(int fd);
// 1 when quotas are on, 0 when off, -1 with errno when the quota tree cannot be read.
int dk_btrfs_quota_status(int fd);
int dk_btrfs_qgroup_limit(int fd, uint64_t max_referenced);
int dk_btrfs_qgroup_destroy(int fd, uint64_t qgroupid);
// The subvolume id of the subvolume `fd` is in (its level-0 qgroup id).
int dk_btrfs_subvol_id(int fd, uint64_t *id);
// The btrfs-progs version libbtrfs-dev was built from ("Btrfs v6.2") and its library version.
const char *dk_btrfs_build_version(void);
int dk_btrfs_lib_version(void);

// An anonymous in-memory file (memfd_create), close-on-exec.
int dk_memfd(const char *name);

// CRC-32C of `n` bytes continuing `crc` (0 to start); hardware-accelerated where possible.
uint32_t dk_crc32c(uint32_t crc, const void *data, size_t n);

// Tell ThreadSanitizer that the lock at `addr` was taken (acquire) or is about to be let go
// (release); nothing outside a --sanitize=thread build. Swift's Synchronization.Mutex takes its
// slow path in the kernel (futex), where the sanitizer cannot see the hand-over.
void dk_tsan_acquire(const void *addr);
void dk_tsan_release(const void *addr);
#endif
