/* Register map internals shared by wb-map.c and wb-modbus-server.c. */
#pragma once

#include "wb-private.h"

typedef enum {
    WB_REG_U16,
    WB_REG_S16,
    WB_REG_U32,
    WB_REG_S32,
    WB_REG_F32,
} WbRegType;

struct _WbMapRegister {
    char *name;
    guint address;
    guint size;
    WbRegType type;
    gboolean low_word_first;
    double scale;
    double offset;
    char *unit;
    char *quantity;
    char *channel;
    char *key;            /* quantity[-channel] */
    char *default_value;  /* number or nominal-* */
    gboolean writable;
    gboolean has_value;   /* a constant (or initial value of a parameter) */
    gboolean value_is_unit_id;
    double value;
    gboolean has_range;
    double min;
    double max;
    char *description;
    int line;
};

typedef struct {
    guint start;
    guint end; /* inclusive */
} WbMapBlock;

struct _WbMap {
    gint ref;
    char *name;
    char *path;
    char *model;
    guint default_unit_id;
    GPtrArray *registers; /* WbMapRegister*, by address */
    GArray *blocks;       /* WbMapBlock, by start */
    gboolean read_fc3;
    gboolean read_fc4;
    gboolean write_fc6;
    gboolean write_fc16;
};
