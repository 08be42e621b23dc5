// dkdrivers: what only the storage drivers need and Swift cannot reach through Glibc: the new
// mount API, a mount from another directory, ID-mapped mounts, project quotas and btrfs ioctls.
#ifndef DKDRIVERS_H
#define DKDRIVERS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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

// ID-mapped mounts (Linux 5.12+). A user namespace whose /proc uid_map and gid_map get the
// texts given ("INSIDE OUTSIDE COUNT" lines), made by a child cloned into it and reaped once its
// ns file is open: the descriptor, or -1 with errno. A detached copy (open_tree OPEN_TREE_CLONE)
// of the mount at `path`, ID-mapped through `userns_fd` (mount_setattr MOUNT_ATTR_IDMAP); attach
// it with dk_move_mount: the descriptor, or -1 with errno (EINVAL where the filesystem cannot).
int dk_userns_open(const char *uid_map, const char *gid_map);
int dk_idmapped_tree(const char *path, int userns_fd);
// mount(2) of overlay with paths relative to `dir`, from a forked child whose filesystem IDs
// are `fsuid`/`fsgid` (capabilities kept): overlay does its own writes (work dir, copy-up) with
// its creator's IDs, which an ID-mapped upper layer must be able to store. 0 or an errno.
int dk_mount_overlay_mapped(const char *dir, const char *target, const char *data, uint32_t fsuid, uint32_t fsgid);
// The ID of the mount `path` is on (statx STATX_MNT_ID, Linux 5.8): 0 or -1 with errno.
int dk_mount_id(const char *path, uint64_t *id);

// btrfs send (diffs from the filesystem): a read-only snapshot; the send stream of the
// read-only subvolume `fd` against the read-only subvolume `parent_root` (its id; 0: a full
// stream) written to `out_fd` (a pipe's write end, read by another thread); what
// GET_SUBVOL_INFO (Linux 4.18+) says of the subvolume `fd` is in: its id, the transactions of its
// last change (ctransid) and of its making (otransid), its flags (BTRFS_SUBVOL_RDONLY), its UUID
// and the UUID of the subvolume it is a snapshot of; renameat2 (RENAME_NOREPLACE,
// RENAME_EXCHANGE); syncfs. 0 or -1 with errno.
struct dk_btrfs_subvol {
    uint64_t id, ctransid, otransid, flags;
    uint8_t uuid[16], parent_uuid[16];
};
int dk_btrfs_snapshot_readonly(int srcfd, int dirfd, const char *name);
int dk_btrfs_send(int fd, int out_fd, uint64_t parent_root, uint64_t flags);
int dk_btrfs_subvol_info(int fd, struct dk_btrfs_subvol *out);
int dk_renameat2(int olddirfd, const char *oldname, int newdirfd, const char *newname, unsigned flags);
int dk_syncfs(int fd);
// Every path of inode `ino` in the subvolume of `fd`, relative to its root, NUL-terminated one
// after the other in `out`; the bytes used, or -1 with errno (EOVERFLOW: `out` is too small).
long dk_btrfs_ino_paths(int fd, uint64_t ino, char *out, size_t size);

#endif
