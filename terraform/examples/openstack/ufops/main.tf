# Stage 3 of terraform/README.md: a UFOP on the platform of stage 2,
# through its management API. The provider takes the address and keys
# from QUFOP_ADDR, QUFOP_ACCESS_KEY and QUFOP_SECRET_KEY, as the qufop CLI
# does (stage 2's management_url and admin keys).

provider "qufop" {}

resource "qufop_ufop" "demo" {
  name        = var.name
  description = "hashes and word counts"
}

# Uploaded and built on apply; a change of any file of the source (its
# source_hash) builds a new version.
resource "qufop_ufop_version" "demo" {
  # The id (the name, known once registered), not var.name: a replaced
  # UFOP (unreg deletes its versions) then replaces these too.
  ufop   = qufop_ufop.demo.id
  source = "${path.module}/${var.source_path}"
}

# Running the version: a new version is rolled out gray.
resource "qufop_ufop_deployment" "demo" {
  ufop      = qufop_ufop.demo.id
  version   = qufop_ufop_version.demo.version
  instances = var.instances
}

data "qufop_ufop" "demo" {
  name = qufop_ufop_deployment.demo.ufop
}
