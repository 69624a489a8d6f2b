import Foundation

extension String {
    /// Whether the text is in Unicode normalization form C (NFC): at once for ASCII, nearly
    /// every id. Of NFC texts, only byte-equal ones are canonically equivalent, so an id that
    /// must be one key everywhere (a SQLite TEXT key compares bytes, a Swift `String` compares
    /// canonical equivalents) must be NFC.
    public var isInNormalizationFormC: Bool {
        if !utf8.contains(where: { $0 >= 0x80 }) { return true }
        return precomposedStringWithCanonicalMapping.utf8.elementsEqual(utf8)
    }
}
