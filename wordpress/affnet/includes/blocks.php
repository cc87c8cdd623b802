<?php
/**
 * The "affnet ad slot" and "affnet tracked link" blocks (dynamic: PHP renders them, the editor
 * saves only their attributes) and the [affnet_slot] shortcode for the classic editor.
 *
 * @package affnet
 */

defined( 'ABSPATH' ) || exit;

/**
 * The blocks' attributes (WordPress hands them to the editor with the rest of the registration).
 *
 * @return array<string, array>
 */
function affnet_block_attributes() {
	$text = array(
		'type'    => 'string',
		'default' => '',
	);
	return array(
		'affnet/ad-slot'      => array(
			'key'    => $text,
			'format' => $text,
		),
		'affnet/tracked-link' => array(
			'campaignId' => array(
				'type'    => 'integer',
				'default' => 0,
			),
			'url'        => $text,
			'text'       => $text,
			'sub1'       => $text,
			'sub2'       => $text,
			'sub3'       => $text,
			'sub4'       => $text,
			'sub5'       => $text,
			'deepLink'   => $text,
		),
	);
}

/**
 * The editor's words, translated here with the plugin's .mo files and handed to blocks/editor.js
 * (window.affnetEditor), so the editor speaks the user's language without JSON catalogues.
 *
 * @return array<string, string>
 */
function affnet_editor_strings() {
	return array(
		'slot'           => __( 'Ad slot', 'affnet' ),
		'choose'         => __( '— Choose —', 'affnet' ),
		'loading'        => __( 'Loading from affnet…', 'affnet' ),
		/* translators: 1: the ad slot's name, 2: its format, such as 300x250. */
		'slotPreview'    => __( 'affnet ad slot: %1$s (%2$s)', 'affnet' ),
		'noSlots'        => __( 'You have no active ad slots on affnet yet: create one under Ad slots on affnet.', 'affnet' ),
		'campaign'       => __( 'Campaign', 'affnet' ),
		'noCampaigns'    => __( 'You are not approved in any campaign on affnet yet.', 'affnet' ),
		'linkText'       => __( 'Link text', 'affnet' ),
		/* translators: %d: the sub-ID's number, 1 to 5. */
		'sub'            => __( 'Sub-ID %d', 'affnet' ),
		'deepLink'       => __( 'Deep link: a page of the advertiser\'s site (optional)', 'affnet' ),
		'build'          => __( 'Build link', 'affnet' ),
		'building'       => __( 'Building the link…', 'affnet' ),
		'trackedUrl'     => __( 'Tracked link:', 'affnet' ),
		'chooseCampaign' => __( 'Choose a campaign first.', 'affnet' ),
		'noLink'         => __( 'No link yet: choose a campaign and build the link.', 'affnet' ),
		'subsPanel'      => __( 'Sub-IDs and deep link', 'affnet' ),
		'subsHint'       => __( 'Sub-IDs and a deep link can be added in the block settings (sidebar) before building the link.', 'affnet' ),
	);
}

/**
 * Registers the editor script, both blocks and the shortcode.
 */
function affnet_register_blocks() {
	wp_register_script(
		'affnet-editor',
		plugins_url( 'blocks/editor.js', AFFNET_FILE ),
		array( 'wp-blocks', 'wp-element', 'wp-components', 'wp-block-editor', 'wp-i18n', 'wp-api-fetch' ),
		AFFNET_VERSION,
		false
	);
	wp_add_inline_script(
		'affnet-editor',
		'window.affnetEditor = ' . wp_json_encode( array( 'strings' => affnet_editor_strings() ) ) . ';',
		'before'
	);
	$attributes = affnet_block_attributes();
	$blocks     = array(
		'affnet/ad-slot'      => array(
			'title'           => __( 'affnet ad slot', 'affnet' ),
			'description'     => __( 'An ad from one of your affnet ad slots, printed by the server so that every role can use it.', 'affnet' ),
			'icon'            => 'megaphone',
			'render_callback' => 'affnet_render_ad_slot_block',
		),
		'affnet/tracked-link' => array(
			'title'           => __( 'affnet tracked link', 'affnet' ),
			'description'     => __( 'A link to a campaign you are approved in, with sub-IDs, built by affnet.', 'affnet' ),
			'icon'            => 'admin-links',
			'render_callback' => 'affnet_render_tracked_link_block',
		),
	);
	// WordPress hands these settings to the editor, where blocks/editor.js adds only the editing.
	foreach ( $blocks as $name => $block ) {
		register_block_type(
			$name,
			$block + array(
				'api_version'   => 2,
				'category'      => 'widgets',
				'attributes'    => $attributes[ $name ],
				'supports'      => array( 'html' => false ),
				'editor_script' => 'affnet-editor',
			)
		);
	}
	add_shortcode( 'affnet_slot', 'affnet_slot_shortcode' );
}
add_action( 'init', 'affnet_register_blocks' );

/**
 * The ad slot block.
 *
 * @param array $attributes key and format.
 * @return string
 */
function affnet_render_ad_slot_block( $attributes ) {
	return affnet_render_slot( $attributes['key'] ?? '', $attributes['format'] ?? '' );
}

/**
 * The tracked-link block.
 *
 * @param array $attributes url, text, ...
 * @return string
 */
function affnet_render_tracked_link_block( $attributes ) {
	return affnet_render_tracked_link( is_array( $attributes ) ? $attributes : array() );
}

/**
 * [affnet_slot key="KEY" format="FORMAT"]: the same markup as the block, on one line.
 *
 * @param array|string $atts The shortcode's attributes.
 * @return string
 */
function affnet_slot_shortcode( $atts ) {
	$atts = shortcode_atts(
		array(
			'key'    => '',
			'format' => '',
		),
		$atts,
		'affnet_slot'
	);
	return affnet_render_slot( $atts['key'], $atts['format'] );
}

/**
 * Leaves the shortcode alone in wptexturize (no curly quotes in its attributes).
 *
 * @param string[] $shortcodes The shortcodes wptexturize skips.
 * @return string[]
 */
function affnet_no_texturize( $shortcodes ) {
	$shortcodes[] = 'affnet_slot';
	return $shortcodes;
}
add_filter( 'no_texturize_shortcodes', 'affnet_no_texturize' );
