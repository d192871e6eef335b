/* Read planning (fewest seconds per cycle) and write splitting (never a
 * register that was not asked for).
 *
 * Reads.  Within one table, sort the wanted registers by address.  Any
 * plan's request covers a contiguous address range, so it reads a run of
 * consecutive wanted registers; overlapping requests can always be
 * shrunk into disjoint ones without cost.  The optimum is therefore a
 * partition of the sorted registers into consecutive runs, found by
 * dynamic programming: best[j] = min over i < j of best[i] + time(run i..j-1),
 * where a run is allowed when it fits max-read, every address it spans can
 * be read through, and one function code reads all its registers.  O(n^2)
 * per table, exact for the cost model in wb-modbus.h. */
#include "wb-map.h"

#include <math.h>

typedef struct {
    guint function;
    guint address;
    guint count;
} Request;

struct _WbReadPlan {
    GArray *requests;
    double cycle_time;
};

struct _WbWritePlan {
    GArray *requests;
};

static gboolean is_bit_function(guint function)
{
    return function == 1 || function == 2;
}

/* RTU bytes of a read: request = unit, fc, address (2), count (2), CRC
 * (2); response = unit, fc, byte count, data, CRC (2). */
static double read_bytes(guint function, guint count)
{
    double data = is_bit_function(function) ? ceil(count / 8.0) : 2.0 * count;
    return 8 + 5 + data;
}

double wb_modbus_request_time(const WbMap *map, guint function, guint count, guint baud)
{
    g_return_val_if_fail(map != NULL, 0);
    double t = (double)(map->turnaround_us + map->min_delay_us) / 1e6;
    if (baud == 0)
        return t;
    double char_time = 11.0 / baud;
    double t35 = baud > 19200 ? 1.75e-3 : 3.5 * char_time;
    return t + read_bytes(function, count) * char_time + 2 * t35;
}

/* What the planner minimises: the modelled time, and over TCP, where
 * requests cost the same whatever their size, the bytes as a tie-break
 * (a nanosecond each, far below any delay a map can state). */
static double plan_cost(const WbMap *map, guint function, guint count, guint baud)
{
    double t = wb_modbus_request_time(map, function, count, baud);
    return baud == 0 ? t + read_bytes(function, count) * 1e-9 : t;
}

static guint table_max_read(const WbMap *map, guint table)
{
    return (table == WB_MAP_COIL || table == WB_MAP_DISCRETE) ? map->max_read_bits : map->max_read;
}

static int compare_regs(gconstpointer a, gconstpointer b)
{
    const WbMapRegister *ra = *(const WbMapRegister *const *)a, *rb = *(const WbMapRegister *const *)b;
    if (ra->table != rb->table)
        return (int)rb->table - (int)ra->table;
    return (int)ra->address - (int)rb->address;
}

static GPtrArray *sorted_unique(const WbMap *map, const WbMapRegister *const *regs, guint n, GError **error)
{
    GPtrArray *sorted = g_ptr_array_sized_new(n);
    for (guint i = 0; i < n; i++) {
        gboolean ours = FALSE;
        for (guint k = 0; k < map->registers->len && !ours; k++)
            ours = g_ptr_array_index(map->registers, k) == regs[i];
        if (!ours) {
            g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_FAILED, "register %s is not from map %s",
                        regs[i] ? regs[i]->name : "(null)", map->name);
            g_ptr_array_unref(sorted);
            return NULL;
        }
        g_ptr_array_add(sorted, (gpointer)regs[i]);
    }
    g_ptr_array_sort(sorted, compare_regs);
    for (guint i = 1; i < sorted->len;) {
        if (g_ptr_array_index(sorted, i) == g_ptr_array_index(sorted, i - 1))
            g_ptr_array_remove_index(sorted, i);
        else
            i++;
    }
    return sorted;
}

/* The lowest function code that reads registers [i, j) as one request, or 0
 * when none can: the span fits max-read; every address in it can be read
 * (inside a declared block, or, without blocks, inside a defined register:
 * nothing is known about undocumented gaps) and none is in a no-read range;
 * with declared blocks the span lies in one block (a device answers its
 * ranges separately); and one function code reads every register the span
 * touches, wanted or not. */
static guint run_function(const WbMap *map, const WbMapRegister *const *r, guint i, guint j)
{
    guint start = r[i]->address;
    guint end = r[j - 1]->address + r[j - 1]->size; /* exclusive */
    guint table = r[i]->table;
    const WbMapTableInfo *t = &map->tables[table];
    if (end - start > table_max_read(map, table))
        return 0;
    guint fcs = ~0u;
    for (guint k = 0; k < map->registers->len; k++) {
        const WbMapRegister *m = g_ptr_array_index(map->registers, k);
        if (m->table == table && m->address < end && m->address + m->size > start)
            fcs &= m->read_fcs;
    }
    if (!fcs)
        return 0;
    if (t->has_blocks) {
        gboolean inside = FALSE;
        for (guint b = 0; b < t->blocks->len && !inside; b++) {
            const WbMapBlock *blk = &g_array_index(t->blocks, WbMapBlock, b);
            inside = start >= blk->start && end - 1 <= blk->end;
        }
        if (!inside)
            return 0;
    }
    for (guint a = start; a < end; a++)
        if (!wb_map_readable(map, table, a))
            return 0;
    for (guint fc = 1; fc <= 4; fc++)
        if (fcs & FC_BIT(fc))
            return fc;
    return 0;
}

WbReadPlan *wb_read_plan_new(const WbMap *map, const WbMapRegister *const *wanted, guint n_wanted, guint baud,
                             GError **error)
{
    g_return_val_if_fail(map != NULL && (wanted || !n_wanted), NULL);
    g_autoptr(GPtrArray) sorted = sorted_unique(map, wanted, n_wanted, error);
    if (!sorted)
        return NULL;
    const WbMapRegister *const *r = (const WbMapRegister *const *)sorted->pdata;
    guint n = sorted->len;
    for (guint i = 0; i < n; i++) {
        if (!r[i]->read_fcs) {
            g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_NOT_SUPPORTED, "%s of %s cannot be read (access = w)",
                        r[i]->name, map->name);
            return NULL;
        }
    }

    WbReadPlan *plan = g_new0(WbReadPlan, 1);
    plan->requests = g_array_new(FALSE, FALSE, sizeof(Request));
    g_autofree double *best = g_new(double, n + 1);
    g_autofree guint *from = g_new(guint, n + 1);
    g_autofree guint *fc = g_new(guint, n + 1);

    for (guint t0 = 0; t0 < n;) {
        /* one table at a time: [t0, t1) */
        guint t1 = t0;
        while (t1 < n && r[t1]->table == r[t0]->table)
            t1++;
        best[t0] = 0;
        for (guint j = t0 + 1; j <= t1; j++) {
            best[j] = INFINITY;
            for (guint i = j; i-- > t0;) {
                guint span = r[j - 1]->address + r[j - 1]->size - r[i]->address;
                if (span > table_max_read(map, r[i]->table))
                    break; /* wider runs only get wider */
                guint f = run_function(map, r, i, j);
                if (!f)
                    continue;
                double cost = best[i] + plan_cost(map, f, span, baud);
                if (cost < best[j]) {
                    best[j] = cost;
                    from[j] = i;
                    fc[j] = f;
                }
            }
            if (!isfinite(best[j])) {
                g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_NOT_SUPPORTED,
                            "%s of %s cannot be read: it is wider than max-read or no function code reads it",
                            r[j - 1]->name, map->name);
                wb_read_plan_free(plan);
                return NULL;
            }
        }
        guint at = plan->requests->len;
        for (guint j = t1; j > t0; j = from[j]) {
            Request q = {fc[j], r[from[j]]->address, r[j - 1]->address + r[j - 1]->size - r[from[j]]->address};
            g_array_insert_val(plan->requests, at, q);
            plan->cycle_time += wb_modbus_request_time(map, q.function, q.count, baud);
        }
        t0 = t1;
    }
    return plan;
}

void wb_read_plan_free(WbReadPlan *plan)
{
    if (!plan)
        return;
    g_array_unref(plan->requests);
    g_free(plan);
}

guint wb_read_plan_get_n_requests(const WbReadPlan *plan)
{
    g_return_val_if_fail(plan != NULL, 0);
    return plan->requests->len;
}

static void get_request(const GArray *requests, guint index, guint *function, guint *address, guint *count)
{
    const Request *q = &g_array_index(requests, Request, index);
    if (function)
        *function = q->function;
    if (address)
        *address = q->address;
    if (count)
        *count = q->count;
}

void wb_read_plan_get_request(const WbReadPlan *plan, guint index, guint *function, guint *address, guint *count)
{
    g_return_if_fail(plan != NULL && index < plan->requests->len);
    get_request(plan->requests, index, function, address, count);
}

double wb_read_plan_get_cycle_time(const WbReadPlan *plan)
{
    g_return_val_if_fail(plan != NULL, 0);
    return plan->cycle_time;
}

/* ---- writes ------------------------------------------------------------- */

WbWritePlan *wb_write_plan_new(const WbMap *map, const WbMapRegister *const *regs, guint n_regs, GError **error)
{
    g_return_val_if_fail(map != NULL && (regs || !n_regs), NULL);
    g_autoptr(GPtrArray) sorted = sorted_unique(map, regs, n_regs, error);
    if (!sorted)
        return NULL;
    const WbMapRegister *const *r = (const WbMapRegister *const *)sorted->pdata;
    guint n = sorted->len;
    for (guint i = 0; i < n; i++) {
        if (!r[i]->write_fcs) {
            g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_NOT_SUPPORTED, "%s of %s cannot be written",
                        r[i]->name, map->name);
            return NULL;
        }
        gboolean coil = r[i]->table == WB_MAP_COIL;
        if (!(r[i]->write_fcs & FC_BIT(coil ? 5 : 6)) && r[i]->size > (coil ? 1968 : map->max_write)) {
            g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_NOT_SUPPORTED,
                        "%s of %s is wider than the map's max-write (%u)", r[i]->name, map->name, map->max_write);
            return NULL;
        }
    }
    WbWritePlan *plan = g_new0(WbWritePlan, 1);
    plan->requests = g_array_new(FALSE, FALSE, sizeof(Request));
    for (guint i = 0; i < n;) {
        gboolean coil = r[i]->table == WB_MAP_COIL;
        guint multi = coil ? 15 : 16, single = coil ? 5 : 6;
        guint limit = coil ? 1968 : map->max_write; /* FC15 carries at most 0x7B0 coils */
        /* a run: adjacent registers of the same table, all allowing the
         * multiple write, within max-write; never split inside a register */
        guint j = i, count = 0;
        while (j < n && r[j]->table == r[i]->table && (r[j]->write_fcs & FC_BIT(multi)) &&
               (j == i || r[j]->address == r[j - 1]->address + r[j - 1]->size) && count + r[j]->size <= limit) {
            count += r[j]->size;
            j++;
        }
        if (j > i && !(count == 1 && (r[i]->write_fcs & FC_BIT(single)))) {
            Request q = {multi, r[i]->address, count};
            g_array_append_val(plan->requests, q);
            i = j;
            continue;
        }
        /* one register of one word where the single write is allowed (the
         * smaller frame every device takes), or a register the map allows
         * single writes only: one request per word, in address order */
        for (guint w = 0; w < r[i]->size; w++) {
            Request q = {single, r[i]->address + w, 1};
            g_array_append_val(plan->requests, q);
        }
        i++;
    }
    return plan;
}

void wb_write_plan_free(WbWritePlan *plan)
{
    if (!plan)
        return;
    g_array_unref(plan->requests);
    g_free(plan);
}

guint wb_write_plan_get_n_requests(const WbWritePlan *plan)
{
    g_return_val_if_fail(plan != NULL, 0);
    return plan->requests->len;
}

void wb_write_plan_get_request(const WbWritePlan *plan, guint index, guint *function, guint *address, guint *count)
{
    g_return_if_fail(plan != NULL && index < plan->requests->len);
    get_request(plan->requests, index, function, address, count);
}
