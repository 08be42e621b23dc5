// Codable over JSONValue: documents decoded into and encoded from Swift types, without Foundation.

/// Codable JSON without Foundation: `decode` reads a document into a `Decodable` type,
/// `encode` writes an `Encodable` value with sorted keys and no insignificant space (the same
/// value gives the same bytes, so a document's digest is stable).
public enum JSONDocument {
    /// Decode `type` from the document `bytes`; a ``JSONError`` names the key path of a value
    /// that is missing or of the wrong type, or the byte offset of a syntax error.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        let value = try JSONValue.parse(bytes)
        do {
            return try T(from: ValueDecoder(value, []))
        } catch let e as DecodingError {
            throw JSONError(describe(e))
        }
    }

    /// The document of `value`: keys sorted, no insignificant space.
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        try JSONDocument.value(of: value).serialized()
    }

    /// The JSON value `value` encodes to.
    public static func value<T: Encodable>(of value: T) throws -> JSONValue {
        let node = EncodedNode()
        try value.encode(to: ValueEncoder(node, []))
        return node.resolved()
    }

    /// `at .manifests[0].digest: ` (empty for the document itself).
    static func at(_ codingPath: [any CodingKey]) -> String {
        codingPath.isEmpty ? "" : "at " + codingPath.map { $0.intValue.map { "[\($0)]" } ?? "." + $0.stringValue }.joined() + ": "
    }

    static func describe(_ e: DecodingError) -> String {
        switch e {
        case let .keyNotFound(key, c): return at(c.codingPath + [key]) + "missing"
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .dataCorrupted(c): return at(c.codingPath) + c.debugDescription
        @unknown default: return "\(e)"
        }
    }
}

// MARK: decoding

struct ValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(_ value: JSONValue, _ codingPath: [any CodingKey]) {
        self.value = value
        self.codingPath = codingPath
    }

    func mismatch<T>(_ type: T.Type, _ what: String) -> DecodingError {
        .typeMismatch(type, .init(codingPath: codingPath, debugDescription: "expected \(what), found \(value.kindName)"))
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case let .object(members) = value else { throw mismatch([String: Any].self, "an object") }
        var byKey: [String: JSONValue] = [:]
        for (k, v) in members { byKey[k] = v }
        return KeyedDecodingContainer(KeyedDecoder<Key>(byKey, codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case let .array(items) = value else { throw mismatch([Any].self, "an array") }
        return UnkeyedDecoder(items, codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }
}

extension ValueDecoder: SingleValueDecodingContainer {
    func decodeNil() -> Bool { value == .null }
    func decode(_ type: Bool.Type) throws -> Bool {
        guard case let .bool(b) = value else { throw mismatch(type, "a boolean") }
        return b
    }
    func decode(_ type: String.Type) throws -> String {
        guard case let .string(s) = value else { throw mismatch(type, "a string") }
        return s
    }
    func decode(_ type: Double.Type) throws -> Double {
        guard case let .number(n) = value, let d = Double(n) else { throw mismatch(type, "a number") }
        return d
    }
    func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }
    func integer<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard case let .number(n) = value else { throw mismatch(type, "an integer") }
        if let i = T(n) { return i }
        // 1e3, 2.0: an integral value written another way.
        if let d = Double(n), d.rounded() == d, let i = T(exactly: d) { return i }
        throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "\(n) is not a \(T.self)"))
    }
    func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try T(from: self) }
}

struct KeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let members: [String: JSONValue]
    let codingPath: [any CodingKey]

    init(_ members: [String: JSONValue], _ codingPath: [any CodingKey]) {
        self.members = members
        self.codingPath = codingPath
    }

    var allKeys: [Key] { members.keys.compactMap { Key(stringValue: $0) } }
    func contains(_ key: Key) -> Bool { members[key.stringValue] != nil }

    func child(_ key: Key) throws -> ValueDecoder {
        guard let v = members[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing"))
        }
        return ValueDecoder(v, codingPath + [key])
    }

    func decodeNil(forKey key: Key) throws -> Bool { try child(key).decodeNil() }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try child(key).decode(type) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try child(key).decode(type) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try child(key).decode(type) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try child(key).decode(type) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try child(key).decode(type) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try child(key).decode(type) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try child(key).decode(type) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try child(key).decode(type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try child(key).decode(type) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try child(key).decode(type) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try child(key).decode(type) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try child(key).decode(type) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try child(key).decode(type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try child(key).decode(type) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try T(from: try child(key)) }
    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try child(key).container(keyedBy: type)
    }
    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { try child(key).unkeyedContainer() }
    func superDecoder() throws -> any Decoder { ValueDecoder(.object(members.map { ($0.key, $0.value) }), codingPath) }
    func superDecoder(forKey key: Key) throws -> any Decoder { try child(key) }
}

struct UnkeyedDecoder: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let codingPath: [any CodingKey]
    var currentIndex = 0

    init(_ items: [JSONValue], _ codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    mutating func next() throws -> ValueDecoder {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "the array ends"))
        }
        defer { currentIndex += 1 }
        return ValueDecoder(items[currentIndex], codingPath + [IndexKey(currentIndex)])
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, items[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }
    mutating func decode(_ type: Bool.Type) throws -> Bool { try next().decode(type) }
    mutating func decode(_ type: String.Type) throws -> String { try next().decode(type) }
    mutating func decode(_ type: Double.Type) throws -> Double { try next().decode(type) }
    mutating func decode(_ type: Float.Type) throws -> Float { try next().decode(type) }
    mutating func decode(_ type: Int.Type) throws -> Int { try next().decode(type) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try next().decode(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try next().decode(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try next().decode(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try next().decode(type) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try next().decode(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try next().decode(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try next().decode(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try next().decode(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try next().decode(type) }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try T(from: try next()) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next().container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> any Decoder { try next() }
}

struct IndexKey: CodingKey {
    var intValue: Int?
    var stringValue: String
    init(_ i: Int) { intValue = i; stringValue = String(i) }
    init?(intValue: Int) { self.init(intValue) }
    init?(stringValue: String) { return nil }
}

extension JSONValue {
    var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

// MARK: encoding

/// A value being encoded: containers write into it, `resolved` gives the JSON value.
final class EncodedNode {
    enum State { case unset, value(JSONValue), object([String: EncodedNode]), array([EncodedNode]) }
    var state: State = .unset

    func resolved() -> JSONValue {
        switch state {
        case .unset: return .object([])
        case let .value(v): return v
        case let .object(m): return .object(m.map { ($0.key, $0.value.resolved()) })
        case let .array(a): return .array(a.map { $0.resolved() })
        }
    }

    func member(_ key: String) -> EncodedNode {
        if case let .object(m) = state, let n = m[key] { return n }
        let n = EncodedNode()
        if case var .object(m) = state {
            m[key] = n
            state = .object(m)
        } else {
            state = .object([key: n])
        }
        return n
    }

    func append() -> EncodedNode {
        let n = EncodedNode()
        if case var .array(a) = state {
            a.append(n)
            state = .array(a)
        } else {
            state = .array([n])
        }
        return n
    }

    var count: Int {
        if case let .array(a) = state { return a.count }
        return 0
    }
}

struct ValueEncoder: Encoder {
    let node: EncodedNode
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(_ node: EncodedNode, _ codingPath: [any CodingKey]) {
        self.node = node
        self.codingPath = codingPath
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object = node.state {} else { node.state = .object([:]) }
        return KeyedEncodingContainer(KeyedEncoder<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .array = node.state {} else { node.state = .array([]) }
        return UnkeyedEncoder(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { self }
}

/// The JSON form of a number: integers as digits, floating point as Swift writes it (finite only).
func number<T: BinaryInteger>(_ v: T) -> JSONValue { .number(String(v)) }
func number(_ v: Double, _ codingPath: [any CodingKey]) throws -> JSONValue {
    guard v.isFinite else {
        throw EncodingError.invalidValue(v, .init(codingPath: codingPath, debugDescription: "JSON has no \(v)"))
    }
    if v == v.rounded(), abs(v) < 1e15 { return .number(String(Int64(v))) }
    return .number(String(v))
}

extension ValueEncoder: SingleValueEncodingContainer {
    func set(_ v: JSONValue) { node.state = .value(v) }
    func encodeNil() throws { set(.null) }
    func encode(_ value: Bool) throws { set(.bool(value)) }
    func encode(_ value: String) throws { set(.string(value)) }
    func encode(_ value: Double) throws { set(try number(value, codingPath)) }
    func encode(_ value: Float) throws { set(try number(Double(value), codingPath)) }
    func encode(_ value: Int) throws { set(number(value)) }
    func encode(_ value: Int8) throws { set(number(value)) }
    func encode(_ value: Int16) throws { set(number(value)) }
    func encode(_ value: Int32) throws { set(number(value)) }
    func encode(_ value: Int64) throws { set(number(value)) }
    func encode(_ value: UInt) throws { set(number(value)) }
    func encode(_ value: UInt8) throws { set(number(value)) }
    func encode(_ value: UInt16) throws { set(number(value)) }
    func encode(_ value: UInt32) throws { set(number(value)) }
    func encode(_ value: UInt64) throws { set(number(value)) }
    func encode<T: Encodable>(_ value: T) throws { try value.encode(to: self) }
}

struct KeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: EncodedNode
    let codingPath: [any CodingKey]

    func child(_ key: Key) -> ValueEncoder { ValueEncoder(node.member(key.stringValue), codingPath + [key]) }

    mutating func encodeNil(forKey key: Key) throws { try child(key).encodeNil() }
    mutating func encode(_ value: Bool, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: String, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try value.encode(to: child(key)) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        child(key).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer { child(key).unkeyedContainer() }
    mutating func superEncoder() -> any Encoder { ValueEncoder(node.member("super"), codingPath) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { child(key) }
}

struct UnkeyedEncoder: UnkeyedEncodingContainer {
    let node: EncodedNode
    let codingPath: [any CodingKey]
    var count: Int { node.count }

    func next() -> ValueEncoder { ValueEncoder(node.append(), codingPath + [IndexKey(node.count)]) }

    mutating func encodeNil() throws { try next().encodeNil() }
    mutating func encode(_ value: Bool) throws { try next().encode(value) }
    mutating func encode(_ value: String) throws { try next().encode(value) }
    mutating func encode(_ value: Double) throws { try next().encode(value) }
    mutating func encode(_ value: Float) throws { try next().encode(value) }
    mutating func encode(_ value: Int) throws { try next().encode(value) }
    mutating func encode(_ value: Int8) throws { try next().encode(value) }
    mutating func encode(_ value: Int16) throws { try next().encode(value) }
    mutating func encode(_ value: Int32) throws { try next().encode(value) }
    mutating func encode(_ value: Int64) throws { try next().encode(value) }
    mutating func encode(_ value: UInt) throws { try next().encode(value) }
    mutating func encode(_ value: UInt8) throws { try next().encode(value) }
    mutating func encode(_ value: UInt16) throws { try next().encode(value) }
    mutating func encode(_ value: UInt32) throws { try next().encode(value) }
    mutating func encode(_ value: UInt64) throws { try next().encode(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try value.encode(to: next()) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        next().container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { next().unkeyedContainer() }
    mutating func superEncoder() -> any Encoder { next() }
}
