// Ring: the first-in first-out queue of the naive diff's ordering and of its base read-ahead.

/// A first-in first-out queue that keeps sequence numbers stable while it runs: `endIndex` is
/// the number the next element gets, and an element is read and written by that number.
struct Ring<Element> {
    private var items: [Element?] = []
    private var head = 0
    private var base = 0          // sequence number of items[0]

    var isEmpty: Bool { head == items.count }
    var count: Int { items.count - head }
    var first: Element? { isEmpty ? nil : items[head] }
    var endIndex: Int { base + items.count }

    mutating func append(_ e: Element) { items.append(e) }

    mutating func removeFirst() -> Element {
        let e = items[head]!
        items[head] = nil
        head += 1
        if head == items.count {
            base += items.count
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 && head * 2 >= items.count {
            base += head
            items.removeFirst(head)
            head = 0
        }
        return e
    }

    subscript(_ sequence: Int) -> Element {
        get { items[sequence - base]! }
        set { items[sequence - base] = newValue }
    }
}
