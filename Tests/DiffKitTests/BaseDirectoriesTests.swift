// The base side of the naive diff: directories read ahead on a thread of their own come in the
// walk's order (byte order of `path/`), the ones the walk skips are not read, and reading on
// demand gives the same.
@testable import DiffKit
import DiffKitArchive
import DiffKitSystem
import TestSupport
import Testing

@Suite(.serialized) struct BaseDirectoriesTests {
    /// `a`, `a-b` and `a.d` sort before `a/`: the walk asks for `a-b/` and `a.d/` first.
    static let tree: [Op] = [
        .file("a/x/y/f", "1"), .file("a/x/g", "2"), .file("a/h", "3"), .file("a-b/i", "4"), .file("a.d/j", "5"),
        .file("b/k/l", "6"), .file("c/m", "7"), .file("top", "8"),
    ]

    /// The keys the walk asks for, in its order, with the names each directory holds.
    static let asked: [(String, [String])] = [
        ("", ["a", "a-b", "a.d", "b", "c", "top"]), ("a-b/", ["i"]), ("a.d/", ["j"]), ("a/", ["h", "x"]),
        ("a/x/", ["g", "y"]), ("c/", ["m"]),          // a/x/y/ and b/ (and b/k/) are not asked for
    ]

    static func names(_ d: BaseDirectory) -> [String] { d.entries.map { Bytes.string($0.name) } }

    @Test(.requires(.root), arguments: [2, 8192])
    func readAheadGivesWhatIsAskedInOrder(limit: Int) throws {
        let root = try Fixture.make(Self.tree)
        defer { Fixture.cleanup(root) }
        let comparer = ContentComparer()
        let reader = BaseReadAhead(root: Bytes.of(root), comparer: comparer, limit: limit)
        try TreeDiff.beside({ reader.run() }, stop: reader.stop) {
            for (key, want) in Self.asked {
                let d = try reader.directory(Bytes.of(key), only: nil, help: { false })
                #expect(Bytes.string(d.key) == key)
                #expect(Self.names(d) == want, "\(key)")
            }
        }
    }

    @Test(.requires(.root)) func onDemandGivesTheSame() throws {
        let root = try Fixture.make(Self.tree)
        defer { Fixture.cleanup(root) }
        let base = BaseOnDemand(root: Bytes.of(root))
        for (key, want) in Self.asked {
            #expect(Self.names(try base.directory(Bytes.of(key), only: nil, help: { false })) == want, "\(key)")
        }
    }

    /// A directory the walk says it will not go into is not read: asked for anyway, it is missing.
    @Test(.requires(.root)) func skippedDirectoriesAreNotRead() throws {
        let root = try Fixture.make(Self.tree)
        defer { Fixture.cleanup(root) }
        let reader = BaseReadAhead(root: Bytes.of(root), comparer: ContentComparer())
        reader.skip(Bytes.of("b/"))
        try TreeDiff.beside({ reader.run() }, stop: reader.stop) {
            _ = try reader.directory([], only: nil, help: { false })
            #expect(throws: SystemError.self) { try reader.directory(Bytes.of("b/"), only: nil, help: { false }) }
            #expect(Self.names(try reader.directory(Bytes.of("c/"), only: nil, help: { false })) == ["m"])
        }
    }

    /// A base that cannot be read fails the walk with the reader's error, naming the path.
    @Test func missingBaseFails() throws {
        let reader = BaseReadAhead(root: Bytes.of("/nonexistent-base-dir"), comparer: ContentComparer())
        try TreeDiff.beside({ reader.run() }, stop: reader.stop) {
            let error = #expect(throws: SystemError.self) { try reader.directory([], only: nil, help: { false }) }
            #expect(error.map { "\($0)" }?.contains("nonexistent-base") == true)
        }
    }
}
