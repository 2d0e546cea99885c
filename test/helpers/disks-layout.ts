/**
 * A layout in SystemImager 5's disks-layout XML, as imageswarm's default: a BIOS boot
 * partition and one root filesystem of `rootMiB` (or the rest of the disk).
 */
export function biosLayoutXml(
  options: { disk?: string; rootFs?: string; rootMiB?: number } = {},
): string {
  const { disk = '/dev/vda', rootFs = 'ext4', rootMiB } = options
  return `<config>
  <disk dev="${disk}" label_type="gpt" unit_of_measurement="MiB">
    <part num="1" size="1" p_type="primary" flags="bios_grub" />
    <part num="2" size="${rootMiB ?? '*'}" p_type="primary" />
  </disk>
  <bootloader flavor="grub2" install_type="legacy"><target dev="${disk}" /></bootloader>
  <fsinfo line="10" real_dev="${disk}2" mp="/" fs="${rootFs}" options="defaults" dump="1" pass="1" />
</config>
`
}
