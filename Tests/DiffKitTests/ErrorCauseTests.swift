// Errors keep their cause as an error: a failed write during an apply is a DiffKitError whose
// `underlying` is the system error itself, not only its text.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import SystemPackage
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.requires(.root)) struct ErrorCauseTests {
    @Test func aFullDiskIsTheCauseOfTheApplyFailure() throws {
        let src = try Fixture.make([.file("small", "s"), .file("big", String(repeating: "x", count: 4 << 20))])
        defer { Fixture.cleanup(src) }
        let tar = try Pipe.tarFile { fd in try Layers.export(directory: Bytes.of(src), to: fd, name: "t") }
        defer { Fixture.cleanup(tarDir(tar)) }
        let root = try Fixture.tempDir("full")
        defer { Fixture.cleanup(root) }
        try Shell.check("mount -t tmpfs -o size=256k tmpfs \(root)")
        defer { _ = try? Shell.run("umount \(root)") }
        let error = #expect(throws: DiffKitError.self) { _ = try Pipe.apply(tar, to: root) }
        guard case let .applyFailed(_, entry, _)? = error else {
            Issue.record("not applyFailed: \(String(describing: error))")
            return
        }
        #expect(entry == "big")
        let cause = error?.underlying as? SystemError
        #expect(cause?.errno == .noSpace, "\(String(describing: error?.underlying))")
        // The message is the one it always was: the entry and the cause's own text.
        #expect(error.map { "\($0)" }?.hasSuffix(": entry big: \(cause.map { "\($0)" } ?? "-")") == true)
    }
}
