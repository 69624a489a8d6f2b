// Events and topics are described in the platform's primitives (JSON, event time, topic specs):
// a module that imports Messaging sees them too.
@_exported import Basics
