# The platform's own jobs (jobspecs/*.nomad.hcl) and the builder's admin
# keys. The ufop-<name> jobs are not here and never will be: the builder
# creates and updates them, the scaler changes their counts, so a resource
# for them would fight both on every apply.

locals {
  jobspecs_dir     = var.jobspecs_dir != null ? var.jobspecs_dir : "${path.module}/../../../jobspecs"
  registry_address = var.registry_address != null ? var.registry_address : "127.0.0.1:${var.ports.registry}"

  # The builder's template reads this path (builder.nomad.hcl): the job's
  # own Nomad Variable, which its workload identity may read without a policy.
  admin_keys_path = "nomad/jobs/qufop-builder"
  # Whether keys were given is not a secret; the keys are.
  with_admin_keys     = nonsensitive(var.admin_keys != null) && contains(var.jobs, "builder")
  admin_keys_variable = local.with_admin_keys ? local.admin_keys_path : null

  # Settings left null (or empty) are not passed: the jobspec's default
  # stands, so the module does not restate the jobspecs' defaults.
  # Values are as on `nomad job run -var`: lists in HCL syntax (jsonencode
  # writes a valid HCL list of strings), numbers as text.
  agent_vars = { for k, v in {
    nomad_addr  = var.nomad_addr
    consul_addr = var.consul_addr
  } : k => v if v != null }

  vars = {
    registry = merge(
      {
        datacenters    = jsonencode(var.datacenters)
        image          = var.registry_image
        port           = tostring(var.ports.registry)
        storage_volume = var.registry_volume
      },
      var.registry_entrypoint != null ? { entrypoint = jsonencode(var.registry_entrypoint) } : {},
      lookup(var.job_vars, "registry", {}),
    )
    builder = merge(
      {
        datacenters     = jsonencode(var.datacenters)
        image           = var.image
        port            = tostring(var.ports.builder)
        registry        = local.registry_address
        nomad_namespace = var.ufop_namespace
      },
      local.agent_vars,
      var.ufop_network != "" ? { ufop_network = var.ufop_network } : {},
      lookup(var.job_vars, "builder", {}),
    )
    gateway = merge(
      {
        datacenters   = jsonencode(var.datacenters)
        image         = var.image
        port          = tostring(var.ports.gateway)
        buckets       = jsonencode(var.buckets)
        bucket_volume = var.bucket_volume
        owner         = var.owner
      },
      var.consul_addr != null ? { consul_addr = var.consul_addr } : {},
      lookup(var.job_vars, "gateway", {}),
    )
    scaler = merge(
      {
        datacenters     = jsonencode(var.datacenters)
        image           = var.image
        count           = tostring(var.scaler_count)
        nomad_namespace = var.ufop_namespace
      },
      local.agent_vars,
      var.ufop_network != "" ? { ufop_network = var.ufop_network } : {},
      lookup(var.job_vars, "scaler", {}),
    )
  }

  # Names of the nodes running each job.
  nodes_of = { for k, d in data.nomad_allocations.placed : k => sort(distinct([for a in d.allocations : a.node_name])) }

  # The address the user reaches a node on: node_addresses, else
  # default_node_address, else the node's name (coalesce skips the null).
  gateway_urls = [for n in lookup(local.nodes_of, "gateway", []) :
    "http://${lookup(var.node_addresses, n, coalesce(var.default_node_address, n))}:${var.ports.gateway}"
  ]
  management_url = length(lookup(local.nodes_of, "builder", [])) > 0 ? (
    "http://${lookup(var.node_addresses, local.nodes_of["builder"][0], coalesce(var.default_node_address, local.nodes_of["builder"][0]))}:${var.ports.builder}"
  ) : null

  jobs_out = { for k, j in nomad_job.platform : k => {
    id           = j.id
    namespace    = j.namespace
    modify_index = j.modify_index
    # The provider records "" when the job has no deployment (a system job).
    deployment_status = j.deployment_status == "" ? null : j.deployment_status
    nodes             = local.nodes_of[k]
  } }
}

resource "nomad_variable" "admin_keys" {
  count = local.with_admin_keys ? 1 : 0

  path = local.admin_keys_path
  # One variable holds both: `nomad var put` and this resource replace the
  # whole variable, so anything else put at this path is overwritten.
  items = {
    access_key = var.admin_keys.access_key
    secret_key = var.admin_keys.secret_key
  }
}

resource "nomad_job" "platform" {
  for_each = var.jobs

  # try: a missing file is reported by the precondition below, with what
  # to do, rather than by file().
  jobspec = try(file("${local.jobspecs_dir}/${each.key}.nomad.hcl"), "")
  hcl2 {
    vars = local.vars[each.key]
  }

  # Wait for the deployment to be healthy (the jobs' update blocks check
  # their Consul services): apply fails when a job does not come up. A
  # system job (the gateway) has no deployment in Nomad 1.6: apply waits for
  # its evaluation only, so its allocations may still be starting.
  detach           = false
  purge_on_destroy = var.purge_on_destroy

  timeouts {
    create = var.deploy_timeout
    update = var.deploy_timeout
  }

  # The builder starts with the keys: the variable exists before its first
  # allocation (its template would also pick up a later one, by restarting).
  depends_on = [nomad_variable.admin_keys]

  lifecycle {
    precondition {
      condition     = fileexists("${local.jobspecs_dir}/${each.key}.nomad.hcl")
      error_message = "No ${each.key}.nomad.hcl in ${local.jobspecs_dir}: set jobspecs_dir to the repository's jobspecs folder. (The default, ../../../jobspecs from the module, holds when the module is used in place: a local source given as a relative path such as \"../../modules/qufop-platform\", or a git source of the whole repository. Terraform copies a module given by an absolute path without the rest of the repository.)"
    }
  }
}

# Where Nomad placed each job, for the outputs: read after the job's apply
# (its id is unknown until then) and again on every refresh.
data "nomad_allocations" "placed" {
  for_each = nomad_job.platform

  filter = "JobID == \"${each.value.id}\" and DesiredStatus == \"run\" and (ClientStatus == \"running\" or ClientStatus == \"pending\")"
}
