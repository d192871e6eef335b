/* Unit tests: the read planner and the write splitter.
 *
 * Random maps are generated here together with their own description
 * (registers, blocks, no-read ranges, function codes, limits, timing).  The
 * test judges every plan with that description and its own cost model
 * (the one the issue states: request and response bytes x 11 bits / baud
 * + 2 x t3.5 + turnaround + min-delay), never with the library's:
 *
 * - optimality: the planner's plan costs no more than the exhaustive
 *   minimum over every grouping of the wanted registers into requests
 *   (all set partitions, by dynamic programming over subsets, so nothing
 *   is pruned); a request never needs to reach beyond its registers;
 * - validity: every request reads only readable addresses, within
 *   max-read, with a function code every register it touches allows, and
 *   together they cover every wanted register;
 * - writes: no request touches an address outside the registers asked
 *   for, each wanted word is written exactly once, FC16 runs stay within
 *   max-write and whole registers, FC06 writes one register.
 *
 * WB_TEST_SEED=N reproduces a run; the seed is printed. */
#include "wb-map.h"
#include "wbt-partitions.h"

#include <math.h>
#include <stdlib.h>

#define N_MAPS 2000
#define MAX_WANTED 14

typedef struct {
    guint table;      /* WbMapTable */
    guint address;
    guint size;
    gboolean readable;
    gboolean writable;
    guint read_fcs;   /* FC_BIT mask */
    guint write_fcs;
} Reg;

typedef struct {
    guint first, last;
} Range;

typedef struct {
    GArray *regs;          /* Reg */
    GArray *blocks[4];     /* Range, per table; NULL: none declared */
    GArray *no_read[4];
    guint max_read, max_read_bits, max_write;
    double turnaround, min_delay; /* seconds */
    guint baud;
    gboolean fc4_holding; /* read-codes = 3;4: no input table, FC04 reads holding registers */
    GString *text;
} Model;

static void model_free(Model *m)
{
    g_array_unref(m->regs);
    for (int t = 0; t < 4; t++) {
        if (m->blocks[t])
            g_array_unref(m->blocks[t]);
        g_array_unref(m->no_read[t]);
    }
    g_string_free(m->text, TRUE);
    g_free(m);
}

static const char *const table_name[] = {"coil", "discrete", "input", "holding"};

static gboolean in_list(const GArray *ranges, guint a)
{
    for (guint i = 0; ranges && i < ranges->len; i++) {
        const Range *r = &g_array_index(ranges, Range, i);
        if (a >= r->first && a <= r->last)
            return TRUE;
    }
    return FALSE;
}

static const Reg *reg_at(const Model *m, guint table, guint a)
{
    for (guint i = 0; i < m->regs->len; i++) {
        const Reg *r = &g_array_index(m->regs, Reg, i);
        if (r->table == table && a >= r->address && a < r->address + r->size)
            return r;
    }
    return NULL;
}

/* A random map and its text.  @writes: a map for the write splitter
 * (holding registers and coils, most of them writable). */
static Model *random_model(GRand *rng, gboolean writes)
{
    Model *m = g_new0(Model, 1);
    m->regs = g_array_new(FALSE, FALSE, sizeof(Reg));
    for (int t = 0; t < 4; t++)
        m->no_read[t] = g_array_new(FALSE, FALSE, sizeof(Range));
    static const guint small_reads[] = {2, 3, 4, 6, 8, 10, 16, 20, 40, 125};
    m->max_read = small_reads[g_rand_int_range(rng, 0, G_N_ELEMENTS(small_reads))];
    m->max_read_bits = (guint)g_rand_int_range(rng, 4, 40);
    m->max_write = (guint)g_rand_int_range(rng, 4, 12); /* a u64 is 4 */
    static const guint bauds[] = {0, 1200, 9600, 19200, 38400, 115200};
    m->baud = bauds[g_rand_int_range(rng, 0, G_N_ELEMENTS(bauds))];
    static const guint delays_ms[] = {0, 0, 5, 20, 850};
    guint delay_ms = delays_ms[g_rand_int_range(rng, 0, G_N_ELEMENTS(delays_ms))];
    guint turn_ms = g_rand_boolean(rng) ? 0 : (guint)g_rand_int_range(rng, 1, 50);
    if (m->baud == 0 && delay_ms == 0)
        delay_ms = 5; /* TCP: time is per request; zero would make every plan equal */
    m->min_delay = delay_ms / 1000.0;
    m->turnaround = turn_ms / 1000.0;
    gboolean both_codes = g_rand_boolean(rng);
    m->fc4_holding = both_codes;

    m->text = g_string_new("[map]\nformat = 1\n");
    g_string_append_printf(m->text, "max-read = %u\nmax-read-bits = %u\nmax-write = %u\n", m->max_read,
                           m->max_read_bits, m->max_write);
    g_string_append_printf(m->text, "min-delay = %ums\nturnaround = %ums\n", delay_ms, turn_ms);
    g_string_append_printf(m->text, "read-codes = %s\n", both_codes ? "3;4" : "3");
    g_string_append(m->text, "write-codes = 6;16\n");
    GString *regs_text = g_string_new(NULL);

    static const guint tables_for_reads[] = {WB_MAP_HOLDING, WB_MAP_INPUT, WB_MAP_COIL, WB_MAP_DISCRETE};
    static const guint tables_for_writes[] = {WB_MAP_HOLDING, WB_MAP_COIL};
    guint n_tables = writes ? 2 : 4;
    for (guint ti = 0; ti < n_tables; ti++) {
        guint table = writes ? tables_for_writes[ti] : tables_for_reads[ti];
        if (ti > 0 && g_rand_int_range(rng, 0, 3) == 0)
            continue; /* not every table in every map */
        if (table == WB_MAP_INPUT && both_codes)
            continue; /* FC04 reads the holding registers in such a map */
        gboolean bits = table == WB_MAP_COIL || table == WB_MAP_DISCRETE;
        guint n = (guint)g_rand_int_range(rng, 1, writes ? 18 : 16);
        guint a = (guint)g_rand_int_range(rng, 0, 50);
        gboolean declare_blocks = !writes && g_rand_boolean(rng);
        GArray *blocks = declare_blocks ? g_array_new(FALSE, FALSE, sizeof(Range)) : NULL;
        Range cur = {a > 2 ? a - (guint)g_rand_int_range(rng, 0, 3) : a, 0};
        for (guint k = 0; k < n; k++) {
            Reg r = {.table = table, .address = a, .readable = TRUE};
            static const guint sizes[] = {1, 1, 1, 2, 2, 4};
            r.size = bits ? 1 : sizes[g_rand_int_range(rng, 0, G_N_ELEMENTS(sizes))];
            const char *type = bits ? "bit" : r.size == 1 ? (g_rand_boolean(rng) ? "u16" : "s16")
                                           : r.size == 2 ? (g_rand_boolean(rng) ? "u32" : "f32") : "u64";
            g_string_append_printf(regs_text, "[%s %u]\nname = %s%u\ntype = %s\n", table_name[table], a,
                                   table_name[table], a, type);
            /* function codes */
            static const guint table_reads[4] = {FC_BIT(1), FC_BIT(2), FC_BIT(4), FC_BIT(3)};
            r.read_fcs = table == WB_MAP_HOLDING ? (both_codes ? FC_BIT(3) | FC_BIT(4) : FC_BIT(3))
                                                 : table_reads[table];
            gboolean can_write = table == WB_MAP_HOLDING || table == WB_MAP_COIL;
            if (can_write && (writes ? g_rand_int_range(rng, 0, 5) != 0 : g_rand_int_range(rng, 0, 6) == 0)) {
                r.writable = TRUE;
                if (!writes && g_rand_int_range(rng, 0, 3) == 0) {
                    r.readable = FALSE; /* write-only: never read, never read through */
                    r.read_fcs = 0;
                    g_string_append(regs_text, "access = w\n");
                } else {
                    g_string_append(regs_text, "access = rw\n");
                }
                r.write_fcs = table == WB_MAP_COIL ? FC_BIT(5) | FC_BIT(15) : FC_BIT(6) | FC_BIT(16);
                if (table == WB_MAP_HOLDING) {
                    int pick = g_rand_int_range(rng, 0, 4);
                    if (pick == 0 && r.size == 1) {
                        r.write_fcs = FC_BIT(6);
                        g_string_append(regs_text, "write-codes = 6\n");
                    } else if (pick == 1) {
                        r.write_fcs = FC_BIT(16);
                        g_string_append(regs_text, "write-codes = 16\n");
                    }
                } else if (g_rand_int_range(rng, 0, 4) == 0) {
                    r.write_fcs = FC_BIT(5);
                    g_string_append(regs_text, "write-codes = 5\n");
                }
            }
            if (r.readable && table == WB_MAP_HOLDING && both_codes && g_rand_int_range(rng, 0, 4) == 0) {
                /* a register that answers one of the two codes only */
                guint fc = g_rand_boolean(rng) ? 3 : 4;
                r.read_fcs = FC_BIT(fc);
                g_string_append_printf(regs_text, "read-codes = %u\n", fc);
            }
            g_string_append_c(regs_text, '\n');
            g_array_append_val(m->regs, r);
            guint end = a + r.size; /* next free address */
            guint gap = (guint)g_rand_int_range(rng, 0, 5) == 0 ? (guint)g_rand_int_range(rng, 3, 12)
                                                                : (guint)g_rand_int_range(rng, 0, 3);
            if (declare_blocks && k + 1 < n && g_rand_int_range(rng, 0, 4) == 0 && gap > 0) {
                /* a block ends in this gap, the next begins before the next register */
                cur.last = end - 1 + (guint)g_rand_int_range(rng, 0, (gint32)gap);
                g_array_append_val(blocks, cur);
                cur.first = cur.last + 1 + (guint)g_rand_int_range(rng, 0, (gint32)(end + gap - cur.last - 1) + 1);
                if (cur.first > end + gap)
                    cur.first = end + gap;
            } else if (declare_blocks && gap > 0 && g_rand_int_range(rng, 0, 4) == 0) {
                /* an address in the gap raises an exception */
                Range nr = {end + (guint)g_rand_int_range(rng, 0, (gint32)gap), 0};
                nr.last = nr.first;
                g_array_append_val(m->no_read[table], nr);
            }
            a = end + gap;
        }
        if (declare_blocks) {
            cur.last = a - 1 + (guint)g_rand_int_range(rng, 0, 3);
            g_array_append_val(blocks, cur);
            const char *prefix = table == WB_MAP_HOLDING ? "" : table == WB_MAP_INPUT ? "input-"
                                 : table == WB_MAP_COIL ? "coil-" : "discrete-";
            g_string_append_printf(m->text, "%sblocks = ", prefix);
            for (guint b = 0; b < blocks->len; b++) {
                const Range *r = &g_array_index(blocks, Range, b);
                g_string_append_printf(m->text, "%s%u-%u", b ? "; " : "", r->first, r->last);
            }
            g_string_append_c(m->text, '\n');
            if (m->no_read[table]->len) {
                g_string_append_printf(m->text, "%sno-read = ", prefix);
                for (guint b = 0; b < m->no_read[table]->len; b++)
                    g_string_append_printf(m->text, "%s%u", b ? "; " : "",
                                           g_array_index(m->no_read[table], Range, b).first);
                g_string_append_c(m->text, '\n');
            }
            m->blocks[table] = blocks;
        }
    }
    g_string_append_c(m->text, '\n');
    g_string_append(m->text, regs_text->str);
    g_string_free(regs_text, TRUE);
    return m;
}

/* ---- the test's own model of a read request ----------------------------- */

static double request_time(const Model *m, guint table, guint count)
{
    gboolean bits = table == WB_MAP_COIL || table == WB_MAP_DISCRETE;
    double data = bits ? (count + 7) / 8 : 2.0 * count;
    double t = m->turnaround + m->min_delay;
    if (m->baud == 0)
        return t;
    double ch = 11.0 / m->baud;
    double t35 = m->baud > 19200 ? 1.75e-3 : 3.5 * ch;
    return t + (8 + 5 + data) * ch + 2 * t35;
}

/* The function codes that can read [first, last] of @table in one
 * request (0: none). */
static guint span_fcs(const Model *m, guint table, guint first, guint last)
{
    gboolean bits = table == WB_MAP_COIL || table == WB_MAP_DISCRETE;
    if (last - first + 1 > (bits ? m->max_read_bits : m->max_read))
        return 0;
    if (m->blocks[table]) {
        gboolean one = FALSE;
        for (guint b = 0; b < m->blocks[table]->len && !one; b++) {
            const Range *r = &g_array_index(m->blocks[table], Range, b);
            one = first >= r->first && last <= r->last;
        }
        if (!one)
            return 0;
    }
    guint fcs = ~0u;
    for (guint a = first; a <= last; a++) {
        if (in_list(m->no_read[table], a))
            return 0;
        const Reg *r = reg_at(m, table, a);
        if (r)
            fcs &= r->read_fcs;
        else if (!m->blocks[table])
            return 0; /* no blocks: only defined registers can be read */
    }
    return fcs;
}

/* Exhaustive minimum over all set partitions of @w (indices into regs,
 * one table). */
typedef struct {
    const Model *m;
    const guint *w;
    guint n;
} Group;

static double group_cost(guint mask, gpointer data)
{
    const Group *g = data;
    guint first = G_MAXUINT, end = 0, table = 0;
    for (guint k = 0; k < g->n; k++)
        if (mask & (1u << k)) {
            const Reg *r = &g_array_index(g->m->regs, Reg, g->w[k]);
            first = MIN(first, r->address);
            end = MAX(end, r->address + r->size);
            table = r->table;
        }
    return span_fcs(g->m, table, first, end - 1) ? request_time(g->m, table, end - first) : INFINITY;
}

static double exhaustive_min(const Model *m, const guint *w, guint n)
{
    Group g = {m, w, n};
    return wbt_min_over_partitions(n, group_cost, &g);
}

static void test_read_plan_optimal(void)
{
    guint32 seed = g_getenv("WB_TEST_SEED") ? (guint32)atoi(g_getenv("WB_TEST_SEED")) : 20261121;
    g_test_message("seed %u", seed);
    g_autoptr(GRand) rng = g_rand_new_with_seed(seed);
    guint plans = 0, infeasible = 0, requests_total = 0, registers_total = 0;
    for (guint iter = 0; iter < N_MAPS; iter++) {
        Model *m = random_model(rng, FALSE);
        g_autoptr(GError) error = NULL;
        g_autoptr(WbMap) map = wb_map_parse_text("random.map", m->text->str, &error);
        if (!map)
            g_error("map %u does not load: %s\n%s", iter, error->message, m->text->str);
        g_assert_cmpuint(wb_map_get_n_registers(map), ==, m->regs->len);

        /* the wanted registers: a random readable subset, at most 14 */
        g_autoptr(GArray) wanted = g_array_new(FALSE, FALSE, sizeof(guint));
        guint n_want = (guint)g_rand_int_range(rng, 1, MAX_WANTED + 1);
        for (guint k = 0; k < m->regs->len && wanted->len < n_want; k++) {
            guint pick = (guint)g_rand_int_range(rng, 0, (gint32)m->regs->len);
            gboolean dup = FALSE;
            for (guint j = 0; j < wanted->len; j++)
                dup |= g_array_index(wanted, guint, j) == pick;
            if (!dup && g_array_index(m->regs, Reg, pick).readable)
                g_array_append_val(wanted, pick);
        }
        if (!wanted->len) {
            model_free(m);
            continue;
        }
        /* map registers are in the same order as the model's: by table
         * (holding, input, discrete, coil), then address */
        g_autofree const WbMapRegister **regs = g_new(const WbMapRegister *, wanted->len);
        for (guint j = 0; j < wanted->len; j++) {
            const Reg *r = &g_array_index(m->regs, Reg, g_array_index(wanted, guint, j));
            regs[j] = NULL;
            for (guint k = 0; k < wb_map_get_n_registers(map); k++) {
                const WbMapRegister *mr = wb_map_get_register(map, k);
                if (wb_map_register_get_table(mr) == r->table && wb_map_register_get_address(mr) == r->address)
                    regs[j] = mr;
            }
            g_assert_nonnull(regs[j]);
        }

        /* the exhaustive minimum, per table */
        double minimum = 0;
        for (guint table = 0; table < 4; table++) {
            guint w[MAX_WANTED], n = 0;
            for (guint j = 0; j < wanted->len; j++)
                if (g_array_index(m->regs, Reg, g_array_index(wanted, guint, j)).table == table)
                    w[n++] = g_array_index(wanted, guint, j);
            if (n)
                minimum += exhaustive_min(m, w, n);
        }

        WbReadPlan *plan = wb_read_plan_new(map, regs, wanted->len, m->baud, &error);
        if (!isfinite(minimum)) {
            /* some register cannot be read at all (wider than max-read) */
            if (plan)
                g_error("map %u: a plan for an unreadable set\n%s", iter, m->text->str);
            g_assert_nonnull(error);
            infeasible++;
            model_free(m);
            continue;
        }
        if (!plan)
            g_error("map %u: no plan (%s), minimum %g s\n%s", iter, error->message, minimum, m->text->str);

        /* validity, and the plan's time by our own model */
        double cost = 0;
        guint n_req = wb_read_plan_get_n_requests(plan);
        for (guint q = 0; q < n_req; q++) {
            guint fc, addr, count;
            wb_read_plan_get_request(plan, q, &fc, &addr, &count);
            g_assert_true(fc >= 1 && fc <= 4);
            g_assert_cmpuint(count, >=, 1);
            static const guint fc_table[5] = {0, WB_MAP_COIL, WB_MAP_DISCRETE, WB_MAP_HOLDING, WB_MAP_INPUT};
            guint table = fc_table[fc];
            if (fc == 4 && m->fc4_holding)
                table = WB_MAP_HOLDING; /* FC04 reads the holding registers (read-codes = 3;4) */
            guint fcs = span_fcs(m, table, addr, addr + count - 1);
            if (!(fcs & FC_BIT(fc)))
                g_error("map %u: request %u (FC%02u %u x %u) reads what cannot be read so\n%s", iter, q, fc, addr,
                        count, m->text->str);
            cost += request_time(m, table, count);
        }
        for (guint j = 0; j < wanted->len; j++) {
            const Reg *r = &g_array_index(m->regs, Reg, g_array_index(wanted, guint, j));
            gboolean covered = FALSE;
            for (guint q = 0; q < n_req && !covered; q++) {
                guint fc, addr, count;
                wb_read_plan_get_request(plan, q, &fc, &addr, &count);
                gboolean table_ok = (r->table == WB_MAP_HOLDING && (fc == 3 || fc == 4)) ||
                                    (r->table == WB_MAP_INPUT && fc == 4) ||
                                    (r->table == WB_MAP_COIL && fc == 1) || (r->table == WB_MAP_DISCRETE && fc == 2);
                covered = table_ok && (r->read_fcs & FC_BIT(fc)) && addr <= r->address &&
                          r->address + r->size <= addr + count;
            }
            if (!covered)
                g_error("map %u: %s %u is not read by the plan\n%s", iter, table_name[r->table], r->address,
                        m->text->str);
        }
        if (cost > minimum + 1e-9)
            g_error("map %u: the plan takes %.9f s, the exhaustive minimum is %.9f s\n%s", iter, cost, minimum,
                    m->text->str);
        g_assert_cmpfloat(fabs(wb_read_plan_get_cycle_time(plan) - cost), <, 1e-9);
        plans++;
        requests_total += n_req;
        registers_total += wanted->len;
        wb_read_plan_free(plan);
        model_free(m);
    }
    g_test_message("%u plans optimal (%u registers in %u requests); %u sets correctly refused", plans,
                   registers_total, requests_total, infeasible);
    g_assert_cmpuint(plans, >, N_MAPS / 2);
}

/* The planner merges across readable gaps and no further: the cases a
 * reader of real devices meets, with the requests spelled out. */
static void test_read_plan_cases(void)
{
    static const char map_text[] =
        "[map]\nformat = 1\nmax-read = 10\nmin-delay = 850ms\nblocks = 0-19; 20-29\nno-read = 6\n"
        "input-blocks = 0-99\n"
        "[holding 0]\nname = a\ntype = u16\n"
        "[holding 4]\nname = b\ntype = u32\n"
        "[holding 8]\nname = c\ntype = u16\n"
        "[holding 18]\nname = d\ntype = u16\n"
        "[holding 21]\nname = e\ntype = u16\n"
        "[holding 29]\nname = f\ntype = u16\n"
        "[input 0]\nname = g\ntype = u16\n"
        "[input 3]\nname = h\ntype = u16\n";
    g_autoptr(GError) error = NULL;
    g_autoptr(WbMap) map = wb_map_parse_text("cases.map", map_text, &error);
    g_assert_no_error(error);
    const char *names[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    const WbMapRegister *regs[G_N_ELEMENTS(names)];
    for (gsize i = 0; i < G_N_ELEMENTS(names); i++)
        regs[i] = wb_map_find_register(map, names[i]);
    WbReadPlan *plan = wb_read_plan_new(map, regs, G_N_ELEMENTS(regs), 9600, &error);
    g_assert_no_error(error);
    /* a..b in one request (0..5); c alone (6 raises an exception); d
     * alone (18 and 21 are in different blocks); e alone (21..29 would be
     * 9 registers but f is 8 away: within max-read 10, so e..f together);
     * g..h in one input request */
    guint expected[][3] = {{3, 0, 6}, {3, 8, 1}, {3, 18, 1}, {3, 21, 9}, {4, 0, 4}};
    g_assert_cmpuint(wb_read_plan_get_n_requests(plan), ==, G_N_ELEMENTS(expected));
    for (guint q = 0; q < G_N_ELEMENTS(expected); q++) {
        guint fc, addr, count;
        wb_read_plan_get_request(plan, q, &fc, &addr, &count);
        if (fc != expected[q][0] || addr != expected[q][1] || count != expected[q][2])
            g_error("request %u is FC%02u %u x %u, expected FC%02u %u x %u", q, fc, addr, count, expected[q][0],
                    expected[q][1], expected[q][2]);
    }
    wb_read_plan_free(plan);

    /* a register wider than max-read cannot be read */
    g_autoptr(WbMap) wide = wb_map_parse_text("wide.map", "[map]\nformat = 1\nmax-read = 2\n"
                                                          "[holding 0]\nname = e\ntype = u64\n", &error);
    g_assert_no_error(error);
    const WbMapRegister *e = wb_map_find_register(wide, "e");
    g_assert_null(wb_read_plan_new(wide, &e, 1, 9600, &error));
    g_assert_nonnull(strstr(error->message, "max-read"));
    g_clear_error(&error);
    /* a register of another map is refused */
    g_assert_null(wb_read_plan_new(map, &e, 1, 9600, &error));
    g_assert_nonnull(error);
}

/* ---- writes ------------------------------------------------------------- */

static void test_write_plan_property(void)
{
    guint32 seed = g_getenv("WB_TEST_SEED") ? (guint32)atoi(g_getenv("WB_TEST_SEED")) : 20261121;
    g_autoptr(GRand) rng = g_rand_new_with_seed(seed ^ 0x5eed);
    guint plans = 0, requests_total = 0;
    for (guint iter = 0; iter < N_MAPS; iter++) {
        Model *m = random_model(rng, TRUE);
        g_autoptr(GError) error = NULL;
        g_autoptr(WbMap) map = wb_map_parse_text("random.map", m->text->str, &error);
        if (!map)
            g_error("map %u does not load: %s\n%s", iter, error->message, m->text->str);
        /* a random subset of the writable registers */
        g_autoptr(GPtrArray) regs = g_ptr_array_new();
        g_autoptr(GArray) wanted = g_array_new(FALSE, FALSE, sizeof(guint));
        for (guint k = 0; k < m->regs->len; k++) {
            const Reg *r = &g_array_index(m->regs, Reg, k);
            if (!r->writable || g_rand_int_range(rng, 0, 3) == 0)
                continue;
            g_array_append_val(wanted, k);
            for (guint j = 0; j < wb_map_get_n_registers(map); j++) {
                const WbMapRegister *mr = wb_map_get_register(map, j);
                if (wb_map_register_get_table(mr) == r->table && wb_map_register_get_address(mr) == r->address)
                    g_ptr_array_add(regs, (gpointer)mr);
            }
        }
        g_assert_cmpuint(regs->len, ==, wanted->len);
        WbWritePlan *plan = wb_write_plan_new(map, (const WbMapRegister *const *)regs->pdata, regs->len, &error);
        if (!plan)
            g_error("map %u: no write plan: %s\n%s", iter, error->message, m->text->str);
        /* every wanted word written exactly once, nothing else */
        GHashTable *written = g_hash_table_new(NULL, NULL);
        guint n_req = wb_write_plan_get_n_requests(plan);
        for (guint q = 0; q < n_req; q++) {
            guint fc, addr, count;
            wb_write_plan_get_request(plan, q, &fc, &addr, &count);
            guint table = (fc == 5 || fc == 15) ? WB_MAP_COIL : WB_MAP_HOLDING;
            g_assert_true(fc == 5 || fc == 6 || fc == 15 || fc == 16);
            g_assert_cmpuint(count, >=, 1);
            if (fc == 5 || fc == 6)
                g_assert_cmpuint(count, ==, 1);
            if (fc == 16)
                g_assert_cmpuint(count, <=, m->max_write);
            for (guint a = addr; a < addr + count; a++) {
                const Reg *r = reg_at(m, table, a);
                gboolean asked = FALSE;
                for (guint j = 0; r && j < wanted->len; j++)
                    asked |= &g_array_index(m->regs, Reg, g_array_index(wanted, guint, j)) == r;
                if (!asked)
                    g_error("map %u: request %u (FC%02u %u x %u) writes %s %u, which was not asked for\n%s", iter, q,
                            fc, addr, count, table_name[table], a, m->text->str);
                if (!(r->write_fcs & FC_BIT(fc)))
                    g_error("map %u: FC%02u writes %s %u, which does not allow it", iter, fc, table_name[table], a);
                /* FC06 writes one register of one word, never a word of a wider one */
                if (fc == 6 && r->size != 1)
                    g_error("map %u: request %u: FC06 at %u writes one word of the %u-word register at %u\n%s", iter,
                            q, addr, r->size, r->address, m->text->str);
                /* a multiple write never cuts a register */
                if ((fc == 15 || fc == 16) && (r->address < addr || r->address + r->size > addr + count))
                    g_error("map %u: FC%02u %u x %u cuts the register at %u", iter, fc, addr, count, r->address);
                gpointer key = GUINT_TO_POINTER(table << 16 | a);
                if (g_hash_table_contains(written, key))
                    g_error("map %u: %s %u written twice", iter, table_name[table], a);
                g_hash_table_add(written, key);
            }
        }
        guint words = 0;
        for (guint j = 0; j < wanted->len; j++)
            words += g_array_index(m->regs, Reg, g_array_index(wanted, guint, j)).size;
        g_assert_cmpuint(g_hash_table_size(written), ==, words);
        g_hash_table_unref(written);
        plans++;
        requests_total += n_req;
        wb_write_plan_free(plan);
        model_free(m);
    }
    g_test_message("%u write plans (%u requests) never touch a register not asked for", plans, requests_total);
}

/* Writes spelled out: adjacent registers share an FC16, a gap splits,
 * FC06 for a lone one-register value that allows it. */
static void test_write_plan_cases(void)
{
    static const char map_text[] = "[map]\nformat = 1\nmax-write = 4\nwrite-codes = 6;16\n"
                                   "[holding 0]\nname = a\ntype = u16\naccess = rw\n"
                                   "[holding 1]\nname = b\ntype = u32\naccess = rw\n"
                                   "[holding 3]\nname = c\ntype = u16\naccess = rw\n"
                                   "[holding 4]\nname = d\ntype = u16\naccess = rw\n"
                                   "[holding 5]\nname = x\ntype = u16\naccess = rw\n"
                                   "[holding 6]\nname = e\ntype = u16\naccess = rw\n"
                                   "[holding 9]\nname = f\ntype = u16\naccess = rw\nwrite-codes = 6\n"
                                   "[holding 10]\nname = g\ntype = u16\naccess = rw\nwrite-codes = 6\n";
    g_autoptr(GError) error = NULL;
    g_autoptr(WbMap) map = wb_map_parse_text("writes.map", map_text, &error);
    g_assert_no_error(error);
    const char *names[] = {"a", "b", "c", "d", "e", "f", "g"}; /* not x */
    const WbMapRegister *regs[G_N_ELEMENTS(names)];
    for (gsize i = 0; i < G_N_ELEMENTS(names); i++)
        regs[i] = wb_map_find_register(map, names[i]);
    WbWritePlan *plan = wb_write_plan_new(map, regs, G_N_ELEMENTS(regs), &error);
    g_assert_no_error(error);
    /* a+b+c = 4 registers (max-write), d alone: FC06; x is skipped; e
     * alone: FC06; f and g allow FC06 only */
    guint expected[][3] = {{16, 0, 4}, {6, 4, 1}, {6, 6, 1}, {6, 9, 1}, {6, 10, 1}};
    g_assert_cmpuint(wb_write_plan_get_n_requests(plan), ==, G_N_ELEMENTS(expected));
    for (guint q = 0; q < G_N_ELEMENTS(expected); q++) {
        guint fc, addr, count;
        wb_write_plan_get_request(plan, q, &fc, &addr, &count);
        if (fc != expected[q][0] || addr != expected[q][1] || count != expected[q][2])
            g_error("write %u is FC%02u %u x %u, expected FC%02u %u x %u", q, fc, addr, count, expected[q][0],
                    expected[q][1], expected[q][2]);
    }
    wb_write_plan_free(plan);
    /* a read-only register cannot be written */
    g_autoptr(WbMap) ro = wb_map_parse_text("ro.map", "[map]\nformat = 1\n[holding 0]\nname = r\ntype = u16\n", &error);
    g_assert_no_error(error);
    const WbMapRegister *r = wb_map_find_register(ro, "r");
    g_assert_null(wb_write_plan_new(ro, &r, 1, &error));
    g_assert_nonnull(strstr(error->message, "cannot be written"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/plan/read/optimal", test_read_plan_optimal);
    g_test_add_func("/plan/read/cases", test_read_plan_cases);
    g_test_add_func("/plan/write/property", test_write_plan_property);
    g_test_add_func("/plan/write/cases", test_write_plan_cases);
    return g_test_run();
}
