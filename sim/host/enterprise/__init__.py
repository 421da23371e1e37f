"""Enterprise online banking: a company's users act in a role within a department, and a
permission table (company, role, department) -> operations x fund accounts, kept as a
pycasbin "RBAC with domains" policy in the host's own database, decides what each of
them may do, at the API and at the ATM, on every request (docs/enterprise.md)."""
