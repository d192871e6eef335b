/* The quantity table from quantities.h, and small shared helpers. */
#include "wb-private.h"

typedef struct {
    const char *name;
    const char *unit;
    const char *rule;
} Quantity;

#define WB_QUANTITY_ROW(id, name, unit, rule) {name, unit, rule},
static const Quantity quantities[] = {WB_QUANTITIES(WB_QUANTITY_ROW)};
#undef WB_QUANTITY_ROW

static const Quantity *lookup(const char *quantity)
{
    g_return_val_if_fail(quantity != NULL, NULL);
    for (gsize i = 0; i < G_N_ELEMENTS(quantities); i++)
        if (strcmp(quantities[i].name, quantity) == 0)
            return &quantities[i];
    return NULL;
}

const char *wb_quantity_get_unit(const char *quantity)
{
    const Quantity *q = lookup(quantity);
    return q ? q->unit : NULL;
}

const char *wb_quantity_get_rule(const char *quantity)
{
    const Quantity *q = lookup(quantity);
    return q ? q->rule : NULL;
}

G_DEFINE_QUARK(wb-plugin-error-quark, wb_plugin_error)

guint wb_abi_version(guint *minor)
{
    if (minor)
        *minor = WB_ABI_MINOR;
    return WB_ABI_MAJOR;
}
