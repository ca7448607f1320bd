"""DOMAIN.md's role templates, written out by hand: the independent oracle for decision tables."""

CATALOGUE = [
    "calendar:view", "appointment:create", "appointment:edit", "appointment:delete", "schedule:edit",
    "client:view", "client:view_contacts", "client:create", "client:edit", "client:delete", "client:export",
    "client:import", "payment:process", "payment:refund", "deposit:topup", "discount:override", "loyalty:adjust",
    "cashdesk:operate", "finance:view", "finance:manage", "finance:export", "payroll:view", "payroll:manage",
    "report:view", "report:export", "inventory:view", "inventory:manage", "marketing:send", "review:manage",
    "catalog:manage", "settings:manage", "employee:manage", "access:manage", "billing:manage",
    "security_log:read", "security_log:export", "security:manage", "login:password", "login:mfa",
]
REQUIRES_MFA = {"client:export", "finance:export", "report:export", "access:manage", "security_log:export",
                "security:manage"}
LOGIN = {"login:password", "login:mfa"}  # "Every template also holds login:password and login:mfa"
VIEWER = LOGIN | {"calendar:view", "client:view", "finance:view", "payroll:view", "report:view", "inventory:view"}
TEMPLATES = {
    "owner": set(CATALOGUE),
    "manager": set(CATALOGUE) - {"billing:manage", "security:manage"},
    "administrator": LOGIN | {"calendar:view", "appointment:create", "appointment:edit", "appointment:delete",
                      "schedule:edit", "client:view", "client:view_contacts", "client:create", "client:edit",
                      "payment:process", "deposit:topup", "discount:override", "cashdesk:operate",
                      "inventory:view", "marketing:send"},
    "call_center": LOGIN | {"calendar:view", "appointment:create", "appointment:edit", "appointment:delete",
                    "client:view", "client:view_contacts", "client:create", "client:edit"},
    "service_provider": LOGIN | {"calendar:view", "appointment:create", "appointment:edit", "client:view",
                                 "payroll:view"},
    "accountant": LOGIN | {"calendar:view", "finance:view", "finance:manage", "finance:export", "payroll:view",
                   "payroll:manage", "report:view", "report:export"},
    "marketer": LOGIN | {"client:view", "client:view_contacts", "client:export", "report:view", "marketing:send",
                 "catalog:manage", "review:manage"},
    "smm_manager": LOGIN | {"client:view", "review:manage", "marketing:send", "report:view"},
    "viewer": VIEWER,
    "system_manager": VIEWER | {"employee:manage", "access:manage", "billing:manage", "security_log:read",
                                "security:manage"},
}
