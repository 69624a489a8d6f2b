// The rules are written in the platform's primitives (JSON, event time, compact forms): a module
// that imports the rules sees them too.
@_exported import Basics
