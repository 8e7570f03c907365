# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Row tuples to the column data of a ClickHouse Native block, in one pass of C.

Compiled by ``cxstream build-native``; ``sinks/blocks.py`` calls it and
documents the contract. ``encode`` returns the bytes clickhouse-driver
would write for the same rows (``tests/sinks/test_blocks.py`` holds it to
that, byte for byte), or ``None`` as soon as a value is not one it encodes
exactly the driver's way: the caller then leaves the block to the driver,
whose conversions and errors stay the reference.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.datetime cimport import_datetime, PyDate_CheckExact
from cpython.float cimport PyFloat_Check, PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_Check
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_Check
from cpython.bytes cimport PyBytes_Check, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.list cimport PyList_CheckExact, PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.math cimport isinf
from libc.stdint cimport uint16_t, uint64_t
from libc.string cimport memcpy

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1
    unsigned long long PyLong_AsUnsignedLongLong(object obj) except? -1
    int PyObject_RichCompareBool(object a, object b, int op) except -1
    int Py_LT

cdef extern from *:
    """
    static inline int cx_date_days(PyObject *d) {
        /* days since 1970-01-01 of a datetime.date, proleptic Gregorian */
        int y = PyDateTime_GET_YEAR(d), m = PyDateTime_GET_MONTH(d), day = PyDateTime_GET_DAY(d);
        y -= m <= 2;
        int era = (y >= 0 ? y : y - 399) / 400;
        int yoe = y - era * 400;
        int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + day - 1;
        int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
    }
    """
    int cx_date_days(PyObject* d)

import_datetime()

# Column kinds: sinks/blocks.py maps each ClickHouse type to one of these (KINDS there).
cdef enum:
    STRING = 1
    UINT8 = 2
    UINT16 = 3
    UINT32 = 4
    UINT64 = 5
    INT8 = 6
    INT16 = 7
    INT32 = 8
    INT64 = 9
    FLOAT32 = 10
    FLOAT64 = 11
    DATE = 12
    DATETIME = 13
    ARRAY_STRING = 14

# The integer kinds written from a signed 64-bit value: their range and width in bytes.
cdef long long _LOW[15]
cdef long long _HIGH[15]
cdef int _WIDTH[15]
for _kind, _low, _high, _width in (
    (INT8, -(1 << 7), (1 << 7) - 1, 1), (INT16, -(1 << 15), (1 << 15) - 1, 2),
    (INT32, -(1 << 31), (1 << 31) - 1, 4), (INT64, -(1 << 63), (1 << 63) - 1, 8),
    (UINT8, 0, (1 << 8) - 1, 1), (UINT16, 0, (1 << 16) - 1, 2),
    (UINT32, 0, (1 << 32) - 1, 4), (DATETIME, 0, (1 << 32) - 1, 4),
):
    _LOW[_kind], _HIGH[_kind], _WIDTH[_kind] = _low, _high, _width


cdef class _Out:
    cdef char* data
    cdef Py_ssize_t size
    cdef Py_ssize_t capacity
    cdef uint64_t total  # Array(String): the strings written so far, for the next end offset

    def __cinit__(self, Py_ssize_t capacity):
        self.capacity = capacity if capacity > 64 else 64
        self.data = <char*>PyMem_Malloc(self.capacity)
        self.size = 0
        self.total = 0
        if self.data == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self.data)

    cdef int reserve(self, Py_ssize_t more) except -1:
        cdef Py_ssize_t want = self.size + more
        cdef Py_ssize_t capacity = self.capacity
        cdef char* grown
        if want <= capacity:
            return 0
        while capacity < want:
            capacity *= 2
        grown = <char*>PyMem_Realloc(self.data, capacity)
        if grown == NULL:
            raise MemoryError()
        self.data = grown
        self.capacity = capacity
        return 0

    cdef inline int varint(self, uint64_t value) except -1:
        self.reserve(10)
        while value >= 0x80:
            self.data[self.size] = <char>((value & 0x7F) | 0x80)
            self.size += 1
            value >>= 7
        self.data[self.size] = <char>value
        self.size += 1
        return 0

    cdef inline int raw(self, const char* bytes_, Py_ssize_t n) except -1:
        self.reserve(n)
        memcpy(self.data + self.size, bytes_, n)
        self.size += n
        return 0


cdef inline int _string(_Out out, object value) except -1:
    """0 written, 1 not a str or bytes. A str the UTF-8 codec refuses raises (the caller gives up)."""
    cdef Py_ssize_t n
    cdef const char* utf8
    if PyUnicode_Check(value):
        utf8 = PyUnicode_AsUTF8AndSize(value, &n)
    elif PyBytes_Check(value):
        utf8 = PyBytes_AS_STRING(value)
        n = PyBytes_GET_SIZE(value)
    else:
        return 1
    out.varint(<uint64_t>n)
    out.raw(utf8, n)
    return 0


cdef int _value(_Out out, _Out strings, object value, int kind) except -1:
    """Writes one value of a column of ``kind``; 1 (and nothing to trust) when it is not one it encodes.

    ``strings``: for ``Array(String)``, where the array's strings go (``out`` gets its end offset).
    """
    cdef long long signed_value
    cdef unsigned long long unsigned_value
    cdef int overflow
    cdef double real
    cdef float single
    cdef int days
    cdef uint16_t u16
    cdef uint64_t u64
    cdef Py_ssize_t k, n

    if kind == STRING:
        return _string(out, value)

    if kind == ARRAY_STRING:
        if PyList_CheckExact(value):
            n = PyList_GET_SIZE(value)
            for k in range(n):
                if _string(strings, <object>PyList_GET_ITEM(value, k)):
                    return 1
        elif PyTuple_CheckExact(value):
            n = PyTuple_GET_SIZE(value)
            for k in range(n):
                if _string(strings, <object>PyTuple_GET_ITEM(value, k)):
                    return 1
        else:
            return 1
        out.total += <uint64_t>n  # offsets count over all rows
        u64 = out.total
        return out.raw(<char*>&u64, 8)

    if kind == FLOAT64 or kind == FLOAT32:
        if PyFloat_Check(value):
            real = PyFloat_AS_DOUBLE(value)
        elif PyLong_Check(value):
            try:
                real = <double>value  # OverflowError past a double's range, as struct's
            except OverflowError:
                return 1
        else:
            return 1
        if kind == FLOAT64:
            return out.raw(<char*>&real, 8)
        single = <float>real
        if isinf(single) and not isinf(real):
            return 1  # struct.pack('f') raises OverflowError here
        return out.raw(<char*>&single, 4)

    if kind == DATE:
        if not PyDate_CheckExact(value):
            return 1
        days = cx_date_days(<PyObject*>value)
        # the driver writes 0 for a date outside 1970-01-01 .. 2149-06-06
        u16 = <uint16_t>days if 0 <= days <= 65535 else 0
        return out.raw(<char*>&u16, 2)

    if not PyLong_Check(value):
        return 1  # a datetime, a float, None: the driver's conversions or errors
    if kind == UINT64:
        if PyObject_RichCompareBool(value, 0, Py_LT):
            return 1
        try:
            unsigned_value = PyLong_AsUnsignedLongLong(value)
        except OverflowError:
            return 1
        u64 = unsigned_value
        return out.raw(<char*>&u64, 8)
    signed_value = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow or not (_LOW[kind] <= signed_value <= _HIGH[kind]):
        return 1  # struct.pack raises for it
    # Little-endian (sinks/blocks.py loads the codec only there): the low bytes are the value.
    return out.raw(<char*>&signed_value, _WIDTH[kind])

def encode(list rows, list names, list types, list kinds, bint serialization_flag):
    """The Native block of ``rows`` (tuples, one value per column): columns, rows, then per column
    its name, its type, a 0 byte when ``serialization_flag`` (protocol revisions with custom
    serialization), and its values. ``None`` when a row or a value is not one it encodes.

    Row by row: each row's tuple and values are read once, into a buffer per column (a window's
    rows are spread over memory; a pass per column read each tuple once per column, and the
    cache misses cost more than the encoding). The buffers are then joined behind their headers.
    """
    cdef Py_ssize_t n_rows = PyList_GET_SIZE(rows)
    cdef Py_ssize_t n_columns = len(names)
    cdef Py_ssize_t i, j, total
    cdef PyObject* item
    cdef list column_outs = []
    cdef list string_outs = []
    cdef int* column_kinds
    cdef PyObject** outs
    cdef PyObject** strings
    cdef _Out out, head
    cdef list heads
    cdef object result
    if len(types) != n_columns or len(kinds) != n_columns:
        raise ValueError("names, types and kinds must be as long as each other")
    for j in range(n_columns):
        column_outs.append(_Out(16 + n_rows * 8))
        string_outs.append(_Out(16 + n_rows * 8) if kinds[j] == ARRAY_STRING else None)
    column_kinds = <int*>PyMem_Malloc(sizeof(int) * (n_columns + 1))
    outs = <PyObject**>PyMem_Malloc(sizeof(PyObject*) * (n_columns + 1))
    strings = <PyObject**>PyMem_Malloc(sizeof(PyObject*) * (n_columns + 1))
    if column_kinds == NULL or outs == NULL or strings == NULL:
        PyMem_Free(column_kinds)
        PyMem_Free(outs)
        PyMem_Free(strings)
        raise MemoryError()
    try:
        for j in range(n_columns):
            column_kinds[j] = kinds[j]
            outs[j] = <PyObject*>column_outs[j]  # borrowed: the lists hold them
            strings[j] = <PyObject*>string_outs[j]
        for i in range(n_rows):
            item = PyList_GET_ITEM(rows, i)
            if not PyTuple_CheckExact(<object>item) or PyTuple_GET_SIZE(<object>item) != n_columns:
                return None
            for j in range(n_columns):
                if _value(<_Out>outs[j], <_Out>strings[j], <object>PyTuple_GET_ITEM(<tuple>item, j),
                          column_kinds[j]):
                    return None
    except UnicodeEncodeError:
        return None  # a lone surrogate: the driver raises its own error for it
    finally:
        PyMem_Free(column_kinds)
        PyMem_Free(outs)
        PyMem_Free(strings)
    # The block is written straight into the bytes object returned: one copy of each column.
    head = _Out(64)
    head.varint(<uint64_t>n_columns)
    head.varint(<uint64_t>n_rows)
    heads = []
    total = head.size
    for j in range(n_columns):
        out = _Out(64)
        _string(out, names[j])
        _string(out, types[j])
        if serialization_flag:
            out.raw(b"\x00", 1)
        heads.append(out)
        total += out.size + (<_Out>column_outs[j]).size
        if string_outs[j] is not None:
            total += (<_Out>string_outs[j]).size
    result = PyBytes_FromStringAndSize(NULL, total)
    cdef char* at = PyBytes_AS_STRING(result)
    memcpy(at, head.data, head.size)
    at += head.size
    for j in range(n_columns):
        for out in (heads[j], column_outs[j], string_outs[j]):
            if out is not None:
                memcpy(at, out.data, out.size)
                at += out.size
    return result
