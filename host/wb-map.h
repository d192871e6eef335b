/* Register map internals shared by wb-map.c, wb-plan.c and
 * wb-modbus-server.c. */
#pragma once

#include "wb-private.h"

typedef enum {
    WB_REG_U16,
    WB_REG_S16,
    WB_REG_U32,
    WB_REG_S32,
    WB_REG_U64,
    WB_REG_S64,
    WB_REG_F32,
    WB_REG_F64,
    WB_REG_STRING,
    WB_REG_BITFIELD,
    WB_REG_ENUM,
    WB_REG_BIT,      /* a coil or discrete input */
} WbRegType;

typedef struct {
    guint64 value;   /* enum value, or bit index for a bitfield */
    char *name;
} WbNamedValue;

/* Function-code bit masks. */
#define FC_BIT(fc) (1u << (fc))

struct _WbMapRegister {
    char *name;
    guint table;          /* WbMapTable */
    guint address;        /* wire address (section address + address-offset) */
    guint doc_address;    /* as written in the section name */
    guint size;           /* registers (or bits for coils/discretes) */
    WbRegType type;
    gboolean low_word_first;
    gboolean little_bytes;
    double scale;
    double offset;
    char *unit;
    char *quantity;
    char *channel;
    char *key;            /* quantity[-channel] */
    char *default_value;  /* number or nominal-* */
    gboolean readable;
    gboolean writable;
    gboolean flash;
    guint read_fcs;       /* FC_BIT mask */
    guint write_fcs;
    int direction;        /* WbMapDirection, or -1: the map's */
    gboolean has_value;   /* a constant (or initial value of a parameter) */
    gboolean value_is_unit_id;
    double value;
    gboolean has_range;
    double min;
    double max;
    GArray *names;        /* WbNamedValue: enum values or bitfield bits */
    char *description;
    int line;
};

typedef struct {
    guint start;
    guint end; /* inclusive */
} WbMapBlock;

typedef struct {
    GArray *blocks;       /* WbMapBlock: read through, gaps answer */
    GArray *no_read;      /* WbMapBlock: raise an exception */
    gboolean has_blocks;  /* blocks were declared; else only registers are readable */
} WbMapTableInfo;

struct _WbMap {
    gint ref;
    char *name;
    char *path;
    char *model;
    guint default_unit_id;
    guint baud;           /* from 'serial', 0 when not given */
    char parity;
    guint data_bits;
    guint stop_bits;
    GPtrArray *registers; /* WbMapRegister*, by table then address */
    WbMapTableInfo tables[4];
    gboolean read_fc3;    /* holding registers are read with FC03 */
    gboolean read_fc4;    /* ... and FC04 (the DTSU666 answers both from one image) */
    gboolean write_fc6;
    gboolean write_fc16;
    guint max_read;       /* registers per read request */
    guint max_read_bits;  /* coils/discretes per read request */
    guint max_write;      /* registers per write request */
    gint64 turnaround_us;
    gint64 min_delay_us;
    int address_offset;
    int direction;        /* WbMapDirection of power-like values, -1 unset */
};

/* TRUE when @addr of @table may be read (inside a block or a register, not
 * in a no-read range). */
gboolean wb_map_readable(const WbMap *map, guint table, guint addr);
/* Parses a map from @text; @path names it in errors. */
WbMap *wb_map_parse_text(const char *path, const char *text, GError **error);
