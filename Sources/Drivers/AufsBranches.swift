// How aufs mounts a union of branches within the page mount(2) data may hold (moby's aufsMount).

/// How a union of branches is mounted: mount(2) data holds at most a page, so as many read-only
/// branches as fit go into the first mount and the rest are added by remounts with `append`
/// (moby's aufs driver, aufsMount). A pure function, tested everywhere.
public enum AufsBranches {
    /// `data` for the first mount (`br:RW=rw:RO1=ro+wh:…,dio,xino=/dev/shm/aufs.xino[,dirperm1]`)
    /// and one `append:RO=ro+wh` per branch that did not fit, in order.
    public static func plan(rw: String, ro: [String], pageSize: Int, mountLabel: String = "", dirperm1: Bool,
                            extraOptions: [String] = []) -> (data: String, appends: [String]) {
        // Room left for ",dio,xino=/dev/shm/aufs.xino[,dirperm1]" and the label (moby's offset 54).
        let capacity = pageSize - mountLabel.utf8.count - 54 - (dirperm1 ? ",dirperm1".count : 0)
        var branches = "br:\(rw)=rw"
        var index = 0
        while index < ro.count {
            let layer = ":\(ro[index])=ro+wh"
            if branches.utf8.count + layer.utf8.count > capacity { break }
            branches += layer
            index += 1
        }
        var options = ["dio", "xino=/dev/shm/aufs.xino"]
        if dirperm1 { options.append("dirperm1") }
        options += extraOptions
        if !mountLabel.isEmpty { options.append("context=\"\(mountLabel)\"") }
        let appends = ro[index...].map { "append:\($0)=ro+wh" + (mountLabel.isEmpty ? "" : ",context=\"\(mountLabel)\"") }
        return (([branches] + options).joined(separator: ","), appends)
    }
}
